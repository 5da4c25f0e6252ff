"""Synapse's transactions into Veche (PUT /send): in a room of either server, the Synapse
user's messages, a topic change and typing reach the Veche user, in order."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.peers import SynapsePeer
from tests.federation.test_synapse_rooms import (
    SynapseClient,
    eventually,
    messages,
    send_texts,
    texts,
)
from tests.sync_helpers import section

pytestmark = pytest.mark.timeout(900)


async def _joined(client: Client, room_id: str, user_id: str) -> bool:
    _, m = await client.get(f"rooms/{quote(room_id)}/joined_members")
    return user_id in m.get("joined", {})


@pytest.mark.parametrize(("where", "version"), [("synapse", "10"), ("synapse", "12"), ("veche", "12")])
async def test_synapse_messages_reach_veche(veche: ServerProcess, synapse: SynapsePeer,
                                            http: aiohttp.ClientSession, where: str,
                                            version: str) -> None:
    bob = await SynapseClient(http, synapse.client_url).register()
    alice = await Client(http, veche.base_url).register("alice")
    owner, guest = (bob, alice) if where == "synapse" else (alice, bob)
    status, room = await owner.post("createRoom", {"room_version": version, "preset": "public_chat"})
    assert status == 200, room
    room_id = room["room_id"]
    owner_server = synapse.server_name if where == "synapse" else veche.server_name
    status, body = await guest.post(f"join/{quote(room_id)}", {},
                                    params={"via": owner_server, "server_name": owner_server})
    assert status == 200, (body, veche.log()[-3000:], synapse.log())
    await eventually(lambda: _joined(owner, room_id, str(guest.user_id)), "the join on both sides")
    await eventually(lambda: _joined(guest, room_id, str(owner.user_id)), "the join on both sides")

    await send_texts(bob, room_id, [f"from synapse {i}" for i in range(5)])
    status, _ = await bob.put(f"rooms/{quote(room_id)}/state/m.room.topic/", {"topic": "set on Synapse"})
    # The topic needs power: in Veche's room bob has none, and Synapse itself refuses it.
    expected_topic = "set on Synapse" if where == "synapse" else None
    assert (status == 200) == (expected_topic is not None)
    status, _ = await bob.put(f"rooms/{quote(room_id)}/typing/{quote(str(bob.user_id))}",
                              {"typing": True, "timeout": 30000})
    assert status == 200

    want = [f"from synapse {i}" for i in range(5)]

    async def alice_sees() -> list[str] | None:
        got = texts(await messages(alice, room_id))
        return got if got[-5:] == want else None

    await eventually(alice_sees, "Synapse's messages on Veche")
    if expected_topic:
        async def topic() -> bool:
            status, body = await alice.get(f"rooms/{quote(room_id)}/state/m.room.topic/")
            return status == 200 and body.get("topic") == expected_topic

        await eventually(topic, "the topic on Veche")

    async def typing() -> bool:
        _, sync = await alice.get("sync", params={"timeout": "0"})
        ephemeral = section(sync, "rooms", "join").get(room_id, {}).get("ephemeral", {}).get("events", [])
        return any(e["type"] == "m.typing" and bob.user_id in e["content"]["user_ids"]
                   for e in ephemeral)

    await eventually(typing, "Synapse's typing notice on Veche")
    # And back: Veche's answer reaches Synapse after Synapse's messages.
    await send_texts(alice, room_id, ["from veche"])

    async def bob_sees() -> list[str] | None:
        got = texts(await messages(bob, room_id))
        return got if got[-6:] == [*want, "from veche"] else None

    await eventually(bob_sees, "Veche's answer on Synapse")
