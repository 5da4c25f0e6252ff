"""A room of Synapse's that a Veche user is invited to and joins (make_join / send_join),
then a second Veche user while Veche is in the room, and a leave; a direct chat a Veche user
starts with a Synapse user (createRoom with invite). The rest of what users of
both servers do together (either side's room, alias joins, knocks, ...) is in
test_synapse_scenario.py; the helpers here serve test_synapse_send.py too.

Synapse runs once per session (fixture `synapse`); the scenarios are few on purpose (slow).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.peers import SynapsePeer
from tests.sync_helpers import events_of, section

pytestmark = pytest.mark.timeout(900)  # the first run installs Synapse


class SynapseClient(Client):
    """Synapse's answers are not checked against the spec's schemas here (its
    joined_members has null display names, for one): they are the peer, not the subject."""

    async def request(self, method: str, path: str, json: Any = None, *,
                      params: dict[str, str] | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}
        if not path.startswith("/"):
            path = "/_matrix/client/v3/" + path
        async with self.session.request(method, self.base_url + path, json=json, params=params,
                                        headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


async def eventually(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


async def messages(client: Client, room_id: str) -> list[dict[str, Any]]:
    status, body = await client.get(f"rooms/{quote(room_id)}/messages",
                                    params={"dir": "b", "limit": "100"})
    assert status == 200, body
    return list(reversed(body["chunk"]))


def texts(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


async def send_texts(client: Client, room_id: str, bodies: list[str]) -> None:
    for i, body in enumerate(bodies):
        status, answer = await client.put(
            f"rooms/{quote(room_id)}/send/m.room.message/t{i}-{time.monotonic_ns()}",
            {"msgtype": "m.text", "body": body})
        assert status == 200, answer


@pytest.mark.parametrize("version", ["10", "12"])
async def test_a_veche_user_joins_a_synapse_room_it_was_invited_to(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession,
        version: str) -> None:
    bob = await SynapseClient(http, synapse.client_url).register()
    alice = await Client(http, veche.base_url).register("alice")
    status, room = await bob.post("createRoom", {"room_version": version, "name": "Synapse's",
                                                 "preset": "private_chat"})
    assert status == 200, room
    room_id = room["room_id"]
    # Synapse sends the invite to Veche (invite v2), which countersigns it.
    status, body = await bob.post(f"rooms/{quote(room_id)}/invite", {"user_id": alice.user_id})
    assert status == 200, (body, veche.log(), synapse.log())

    async def invited() -> Any:
        _, sync = await alice.get("sync", params={"timeout": "0"})
        return section(sync, "rooms", "invite").get(room_id)

    invite = await eventually(invited, "the invite in Veche's /sync")
    shown = {e["type"]: e for e in invite["invite_state"]["events"]}
    assert shown["m.room.name"]["content"]["name"] == "Synapse's"

    # Alice accepts: Veche joins through Synapse (make_join / send_join).
    status, body = await alice.post(f"join/{quote(room_id)}", {})
    assert status == 200, (body, veche.log(), synapse.log())
    _, sync = await alice.get("sync", params={"timeout": "0"})
    joined = section(sync, "rooms", "join")[room_id]
    state = {(e["type"], e["state_key"]) for e in events_of(joined, "state") + events_of(joined, "timeline")}
    assert ("m.room.name", "") in state and ("m.room.member", bob.user_id) in state
    status, members = await alice.get(f"rooms/{quote(room_id)}/joined_members")
    assert set(members["joined"]) == {alice.user_id, bob.user_id}

    # Synapse sees her join, then her messages, in order.
    async def bob_sees_alice_joined() -> bool:
        _, m = await bob.get(f"rooms/{quote(room_id)}/joined_members")
        return alice.user_id in m.get("joined", {})

    await eventually(bob_sees_alice_joined, "Synapse seeing the join")
    await send_texts(alice, room_id, [f"hello {i}" for i in range(5)])

    async def bob_sees_messages() -> list[str] | None:
        got = texts(await messages(bob, room_id))
        return got if got == [f"hello {i}" for i in range(5)] else None

    await eventually(bob_sees_messages, "Veche's messages on Synapse")

    # A second Veche user invited into a room Veche is in: the invite joins the room's
    # graph, and her join is a local event Synapse gets in a transaction.
    carol = await Client(http, veche.base_url).register("carol")
    status, body = await bob.post(f"rooms/{quote(room_id)}/invite", {"user_id": carol.user_id})
    assert status == 200, (body, veche.log())

    async def carol_invited() -> Any:
        _, sync = await carol.get("sync", params={"timeout": "0"})
        return section(sync, "rooms", "invite").get(room_id)

    await eventually(carol_invited, "the second invite")
    status, body = await carol.post(f"join/{quote(room_id)}", {})
    assert status == 200, (body, veche.log())

    async def bob_sees_carol() -> bool:
        _, m = await bob.get(f"rooms/{quote(room_id)}/joined_members")
        return carol.user_id in m.get("joined", {})

    await eventually(bob_sees_carol, "Synapse seeing the second join")

    # She leaves: a local event of a room Veche is in, sent to Synapse by the queue.
    status, body = await alice.post(f"rooms/{quote(room_id)}/leave", {})
    assert status == 200, body

    async def bob_sees_alice_left() -> bool:
        _, m = await bob.get(f"rooms/{quote(room_id)}/joined_members")
        return alice.user_id not in m.get("joined", {alice.user_id: {}})

    await eventually(bob_sees_alice_left, "Synapse seeing the leave")


async def test_a_direct_chat_created_with_a_synapse_user_invites_them(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession) -> None:
    """How Element starts a DM: createRoom with the other user in `invite` and is_direct.
    The invite goes to their server (it was only stored here before)."""
    alice = await Client(http, veche.base_url).register("alice")
    bob = await SynapseClient(http, synapse.client_url).register()
    status, room = await alice.post("createRoom", {
        "preset": "trusted_private_chat", "is_direct": True, "invite": [bob.user_id]})
    assert status == 200, (room, veche.log()[-3000:])
    room_id = room["room_id"]

    async def bob_invited() -> Any:
        _, sync = await bob.get("sync", params={"timeout": "0", "filter": '{"room":{"timeline":{"limit":1}}}'})
        invite = sync.get("rooms", {}).get("invite", {}).get(room_id)
        if invite is None:
            return None
        return next(e for e in invite["invite_state"]["events"]
                    if e["type"] == "m.room.member" and e["state_key"] == bob.user_id)

    member = await eventually(bob_invited, "the DM invite in Synapse's /sync")
    assert member["content"].get("is_direct") is True, member
    status, body = await bob.post(f"join/{quote(room_id)}", {})
    assert status == 200, (body, veche.log()[-3000:])
    await send_texts(alice, room_id, ["hello bob"])

    async def bob_reads() -> list[str] | None:
        got = texts(await messages(bob, room_id))
        return got if got == ["hello bob"] else None

    await eventually(bob_reads, "the DM message on Synapse")
