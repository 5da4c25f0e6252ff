"""Typing, read receipts, presence, profiles and spaces across Veche and Synapse, both ways.

A Synapse user (bob) makes a room and invites a Veche user (alice), who joins; each then
sees what the other does in it. Spaces: a space on each server with a room of each server
is walked by the other server's user (federation /hierarchy for the room their server is
not in). Synapse runs once per session (fixture `synapse`).
"""

from __future__ import annotations

import itertools
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.peers import SynapsePeer
from tests.federation.test_synapse_rooms import SynapseClient, eventually
from tests.sync_helpers import events_of

pytestmark = pytest.mark.timeout(900)  # the first run installs Synapse


def q(value: str) -> str:
    return quote(value, safe="")


async def create(client: Client, name: str, **body: Any) -> str:
    status, room = await client.post("createRoom", {"name": name, "preset": "public_chat", **body})
    assert status == 200, room
    return str(room["room_id"])


async def joined(client: Client, room_id: str, user_id: str) -> bool:
    status, m = await client.get(f"rooms/{q(room_id)}/joined_members")
    return status == 200 and user_id in m.get("joined", {})


async def shared_room(veche: ServerProcess, synapse: SynapsePeer,
                      http: aiohttp.ClientSession) -> tuple[Client, Client, str]:
    """(alice on Veche, bob on Synapse, a room of bob's both are joined to)."""
    bob = await SynapseClient(http, synapse.client_url).register()
    alice = await Client(http, veche.base_url).register("alice")
    room_id = await create(bob, "Shared")
    status, body = await alice.post(f"join/{q(room_id)}?server_name={q(synapse.server_name)}", {})
    assert status == 200, (body, veche.log(), synapse.log())
    await eventually(lambda: joined(bob, room_id, alice.user_id or ""), "Synapse seeing the join")
    return alice, bob, room_id


_timeouts = itertools.count(1)


async def ephemeral(client: Client, room_id: str) -> dict[str, Any]:
    """The room's typing and receipt events in a fresh initial /sync of `client` (each with
    another timeout: Synapse answers a repeated request from its cache for minutes)."""
    status, sync = await client.get("sync", params={"timeout": str(next(_timeouts))})
    assert status == 200, sync
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    return {e["type"]: e["content"] for e in room.get("ephemeral", {}).get("events", [])}


async def send(client: Client, room_id: str, body: str) -> str:
    status, sent = await client.put(
        f"rooms/{q(room_id)}/send/m.room.message/{time.monotonic_ns()}",
        {"msgtype": "m.text", "body": body})
    assert status == 200, sent
    return str(sent["event_id"])


async def test_typing_receipts_and_presence_both_ways(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession) -> None:
    alice, bob, room_id = await shared_room(veche, synapse, http)
    a, b = alice.user_id or "", bob.user_id or ""

    # Typing.
    status, _ = await alice.put(f"rooms/{q(room_id)}/typing/{q(a)}", {"typing": True, "timeout": 30000})
    assert status == 200

    async def bob_sees_alice_typing() -> bool:
        return a in (await ephemeral(bob, room_id)).get("m.typing", {}).get("user_ids", [])

    await eventually(bob_sees_alice_typing, "Synapse seeing Veche's typing")
    status, _ = await bob.put(f"rooms/{q(room_id)}/typing/{q(b)}", {"typing": True, "timeout": 30000})
    assert status == 200

    async def alice_sees_bob_typing() -> bool:
        return b in (await ephemeral(alice, room_id)).get("m.typing", {}).get("user_ids", [])

    await eventually(alice_sees_bob_typing, "Veche seeing Synapse's typing")

    # Read receipts.
    async def has(client: Client, event_id: str) -> bool:
        return (await client.get(f"rooms/{q(room_id)}/event/{q(event_id)}"))[0] == 200

    from_bob = await send(bob, room_id, "from bob")
    await eventually(lambda: has(alice, from_bob), "bob's message on Veche")
    status, body = await alice.post(f"rooms/{q(room_id)}/receipt/m.read/{q(from_bob)}", {})
    assert status == 200, body

    async def bob_sees_alice_read() -> bool:
        receipts = (await ephemeral(bob, room_id)).get("m.receipt", {})
        return a in receipts.get(from_bob, {}).get("m.read", {})

    await eventually(bob_sees_alice_read, "Synapse seeing Veche's receipt")
    from_alice = await send(alice, room_id, "from alice")

    await eventually(lambda: has(bob, from_alice), "alice's message on Synapse")
    status, body = await bob.post(f"rooms/{q(room_id)}/receipt/m.read/{q(from_alice)}", {})
    assert status == 200, body

    async def alice_sees_bob_read() -> bool:
        receipts = (await ephemeral(alice, room_id)).get("m.receipt", {})
        return b in receipts.get(from_alice, {}).get("m.read", {})

    await eventually(alice_sees_bob_read, "Veche seeing Synapse's receipt")

    # Presence.
    status, _ = await alice.put(f"presence/{q(a)}/status",
                                {"presence": "online", "status_msg": "on Veche"})
    assert status == 200

    async def bob_sees_alice_present() -> Any:
        status, got = await bob.get(f"presence/{q(a)}/status")
        return status == 200 and got.get("status_msg") == "on Veche" and got["presence"] == "online"

    await eventually(bob_sees_alice_present, "Synapse seeing Veche's presence")
    status, _ = await bob.put(f"presence/{q(b)}/status",
                              {"presence": "unavailable", "status_msg": "on Synapse"})
    assert status == 200

    async def alice_sees_bob_present() -> Any:
        status, got = await alice.get(f"presence/{q(b)}/status")
        return status == 200 and got.get("status_msg") == "on Synapse" \
            and got["presence"] == "unavailable"

    await eventually(alice_sees_bob_present, "Veche seeing Synapse's presence")
    status, sync = await alice.get("sync", params={"timeout": str(next(_timeouts))})
    shown = [e for e in events_of(sync, "presence") if e["sender"] == b]
    assert shown and shown[-1]["content"]["status_msg"] == "on Synapse", sync["presence"]


async def test_profiles_and_the_user_directory_across_servers(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession) -> None:
    alice, bob, room_id = await shared_room(veche, synapse, http)
    a, b = alice.user_id or "", bob.user_id or ""
    # Before they share a room, a stranger on Synapse is not in alice's directory.
    carol = await SynapseClient(http, synapse.client_url).register()
    assert (await carol.put(f"profile/{q(carol.user_id or '')}/displayname",
                            {"displayname": "Carol Stranger"}))[0] == 200

    # bob renames himself: his member event in the shared room tells Veche.
    assert (await bob.put(f"profile/{q(b)}/displayname", {"displayname": "Bob of Synapse"}))[0] == 200

    async def alice_sees_bob_renamed() -> bool:
        _, m = await alice.get(f"rooms/{q(room_id)}/joined_members")
        return bool(m.get("joined", {}).get(b, {}).get("display_name") == "Bob of Synapse")

    await eventually(alice_sees_bob_renamed, "bob's new name on Veche")
    status, found = await alice.post("user_directory/search", {"search_term": "of synapse"})
    assert status == 200, found
    assert [(u["user_id"], u.get("display_name")) for u in found["results"]] == [(b, "Bob of Synapse")]
    status, found = await alice.post("user_directory/search", {"search_term": "stranger"})
    assert (status, found["results"]) == (200, []), found
    # alice asks for bob's profile: Veche asks Synapse (/query/profile).
    status, profile = await alice.get(f"profile/{q(b)}")
    assert (status, profile.get("displayname")) == (200, "Bob of Synapse"), profile
    status, field = await alice.get(f"profile/{q(carol.user_id or '')}/displayname")
    assert (status, field) == (200, {"displayname": "Carol Stranger"}), field

    # alice renames herself: her member events are updated, and Synapse sees them.
    assert (await alice.put(f"profile/{q(a)}/displayname", {"displayname": "Alice of Veche"}))[0] == 200

    async def bob_sees_alice_renamed() -> bool:
        _, m = await bob.get(f"rooms/{q(room_id)}/joined_members")
        return bool(m.get("joined", {}).get(a, {}).get("display_name") == "Alice of Veche")

    await eventually(bob_sees_alice_renamed, "alice's new name on Synapse")
    status, profile = await bob.get(f"profile/{q(a)}")
    assert (status, profile.get("displayname")) == (200, "Alice of Veche"), profile


def names(body: dict[str, Any]) -> list[str]:
    return [r.get("name") for r in body["rooms"]]


async def add_child(client: Client, space: str, child: str, server: str) -> None:
    status, body = await client.put(f"rooms/{q(space)}/state/m.space.child/{q(child)}",
                                    {"via": [server]})
    assert status == 200, body


async def test_spaces_with_rooms_on_both_servers_are_walked_from_either(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession) -> None:
    bob = await SynapseClient(http, synapse.client_url).register()
    alice = await Client(http, veche.base_url).register("alice")
    space = {"creation_content": {"type": "m.space"}}
    on_synapse = await create(bob, "Synapse room")
    on_veche = await create(alice, "Veche room")
    closed = await create(alice, "Veche invite-only", preset="private_chat")
    synapse_space = await create(bob, "Synapse space", **space)
    veche_space = await create(alice, "Veche space", **space)
    for child, server in ((on_synapse, synapse.server_name), (on_veche, veche.server_name)):
        await add_child(bob, synapse_space, child, server)
    for child, server in ((on_veche, veche.server_name), (closed, veche.server_name),
                          (on_synapse, synapse.server_name)):
        await add_child(alice, veche_space, child, server)

    # alice joins bob's space; Veche is not in bob's room, and asks Synapse about it.
    status, body = await alice.post(f"join/{q(synapse_space)}?server_name={q(synapse.server_name)}", {})
    assert status == 200, (body, veche.log())
    status, tree = await alice.get(f"/_matrix/client/v1/rooms/{q(synapse_space)}/hierarchy")
    assert status == 200, tree
    assert names(tree) == ["Synapse space", "Synapse room", "Veche room"], tree
    remote = next(r for r in tree["rooms"] if r["room_id"] == on_synapse)
    assert remote["join_rule"] == "public" and remote["num_joined_members"] == 1

    # bob joins alice's space; Synapse asks Veche about the rooms it is not in, and is not
    # shown the invite-only one.
    status, body = await bob.post(f"join/{q(veche_space)}?server_name={q(veche.server_name)}", {})
    assert status == 200, (body, synapse.log())
    status, tree = await bob.get(f"/_matrix/client/v1/rooms/{q(veche_space)}/hierarchy")
    assert status == 200, tree
    assert names(tree) == ["Veche space", "Veche room", "Synapse room"], (tree, veche.log())
    top = tree["rooms"][0]
    assert {c["state_key"] for c in top["children_state"]} == {on_veche, closed, on_synapse}
