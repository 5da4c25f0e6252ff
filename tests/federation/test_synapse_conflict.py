"""Veche and Synapse cut off from each other, both still serving their own users, change the
same state; once the link heals and each side's users talk again, both servers resolve the
fork to the same current state (the spec's state resolution, as each implements it).

The link is cut with relays in front of both federation ports (tests/federation/link.py):
both servers' names point at their relay, so nothing else reaches them.

In a room of the home side, `owner` (power 100) and `deputy` (a user of the other server,
power 50, enough to ban and to set the topic), with `carol` of the home side. Cut off:
the owner demotes the deputy and sets the topic; the deputy bans carol and sets another
topic. Resolution puts the owner's (higher-powered) power levels first, so the deputy's ban
and topic fail their auth checks against the resolved state: carol stays, the owner's topic
wins, on both servers. Then both set the topic while cut off once more, when anyone may:
equal standing, so the later topic wins.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from nio import JoinResponse, RoomBanResponse, RoomCreateResponse, RoomPreset

from tests.conftest import ServerProcess
from tests.federation.link import FederationLink
from tests.federation.peers import SynapsePeer, start_federating_veche
from tests.federation.pki import TestCA
from tests.federation.test_synapse_scenario import Side, User, call, eventually, put_state, send

pytestmark = pytest.mark.timeout(900)

COMPARED = ("m.room.power_levels", "m.room.topic", "m.room.member", "m.room.join_rules",
            "m.room.create", "m.room.name")


@pytest.fixture
async def veche_link() -> AsyncIterator[FederationLink]:
    link = FederationLink(0)
    yield link
    link.close()


@pytest.fixture
async def veche(make_server: Any, test_ca: TestCA, veche_link: FederationLink) -> ServerProcess:
    return start_federating_veche(make_server, test_ca, link=veche_link)


async def current(user: User, room_id: str) -> dict[tuple[str, str], tuple[str, Any]]:
    state = await user.state(room_id)
    return {k: (e["event_id"], e["content"]) for k, e in state.items() if k[0] in COMPARED}


@pytest.mark.parametrize(("home", "version", "chatter"),
                         [("veche", "11", 0), ("synapse", "12", 0), ("veche", "12", 60)])
async def test_both_servers_resolve_a_fork_made_while_cut_off_the_same_way(
        veche: ServerProcess, veche_link: FederationLink, synapse: SynapsePeer,
        http: aiohttp.ClientSession, home: str, version: str, chatter: int) -> None:
    sides = {"veche": Side("veche", veche.base_url, veche.server_name, veche.log),
             "synapse": Side("synapse", synapse.client_url, synapse.server_name, synapse.log)}
    here, there = sides[home], sides["synapse" if home == "veche" else "veche"]
    both = [here, there]
    owner = await User(here, http).register("owner")
    carol = await User(here, http).register("carol")
    deputy = await User(there, http).register("deputy")
    try:
        created = await call("createRoom", owner.nio.room_create(
            name="Contested", room_version=version, preset=RoomPreset.public_chat), RoomCreateResponse)
        room = str(created.room_id)
        await call("carol joins", carol.nio.join(room), JoinResponse)
        status, body = await deputy.raw("POST", f"join/{quote(room)}", {},
                                        params={"server_name": here.server_name, "via": here.server_name})
        assert status == 200, body
        _, levels = await owner.raw("GET", f"rooms/{quote(room)}/state/m.room.power_levels/")
        levels["users"][deputy.user_id] = 50
        pl_id = await put_state(owner, room, "m.room.power_levels", levels)
        await eventually(lambda: _seen(deputy, room, pl_id), "the deputy's promotion", both)
        before = await current(owner, room)
        assert before == await current(deputy, room)

        with cut_off(veche_link, synapse):
            demoted = {**levels, "users": {**levels["users"], deputy.user_id: 0}}
            await put_state(owner, room, "m.room.power_levels", demoted)
            await put_state(owner, room, "m.room.topic", {"topic": "the owner's"})
            await call("ban", deputy.nio.room_ban(room, carol.user_id, "while cut off"),
                       RoomBanResponse)
            await put_state(deputy, room, "m.room.topic", {"topic": "the deputy's"})
            for i in range(chatter):  # a long gap for each side to bridge afterwards
                await send(owner, room, {"msgtype": "m.text", "body": f"alone {i}"})
                await send(deputy, room, {"msgtype": "m.text", "body": f"alone too {i}"})
            await asyncio.sleep(2)  # both servers try to send, and fail
            # Each side sees only its own changes: the link is really cut.
            assert (await carol.membership(room, carol.user_id)) == "join"
            assert (await deputy.membership(room, carol.user_id)) == "ban"
            mine, theirs = await current(owner, room), await current(deputy, room)
            assert mine[("m.room.topic", "")][1] == {"topic": "the owner's"}
            assert theirs[("m.room.topic", "")][1] == {"topic": "the deputy's"}

        # Users talk again: each new message points at its own side's fork; each server
        # fetches what it missed and resolves the fork.
        await send(owner, room, {"msgtype": "m.text", "body": "anyone there?"})
        await send(deputy, room, {"msgtype": "m.text", "body": "back"})
        resolved = await agreed(owner, deputy, room, both)
        assert resolved[("m.room.topic", "")][1] == {"topic": "the owner's"}
        assert resolved[("m.room.member", carol.user_id)][1]["membership"] == "join"
        assert resolved[("m.room.power_levels", "")][1]["users"][deputy.user_id] == 0

        # Once more, with equal rights: anyone may now set the topic, and both do while cut
        # off. Same place in the power levels' mainline, so the later one wins. (Promoting
        # the deputy again would not do: a fork still holding their old ban, merged again,
        # would then let the ban through, on both servers alike.)
        levels = resolved[("m.room.power_levels", "")][1]
        pl_id = await put_state(owner, room, "m.room.power_levels",
                                {**levels, "events": {**levels.get("events", {}), "m.room.topic": 0}})
        await eventually(lambda: _seen(deputy, room, pl_id), "the open topic", both)
        with cut_off(veche_link, synapse):
            await put_state(owner, room, "m.room.topic", {"topic": "the owner's, again"})
            await asyncio.sleep(0.05)
            await put_state(deputy, room, "m.room.topic", {"topic": "the deputy's, later"})
            await asyncio.sleep(1)
        await send(deputy, room, {"msgtype": "m.text", "body": "and again"})
        await send(owner, room, {"msgtype": "m.text", "body": "again?"})
        resolved = await agreed(owner, deputy, room, both)
        assert resolved[("m.room.topic", "")][1] == {"topic": "the deputy's, later"}

        # And everyone keeps talking in the merged room.
        last = await send(carol, room, {"msgtype": "m.text", "body": f"still here {secrets.token_hex(2)}"})
        await eventually(lambda: _seen(deputy, room, last), "carol's message after the merge", both)
    finally:
        for u in (owner, carol, deputy):
            await u.close()


@contextmanager
def cut_off(veche_link: FederationLink, synapse: SynapsePeer) -> Iterator[None]:
    """Both directions cut; healed however the block ends (the Synapse is the session's)."""
    veche_link.cut()
    synapse.link.cut()
    try:
        yield
    finally:
        veche_link.heal()
        synapse.link.heal()


async def agreed(a: User, b: User, room_id: str, sides: list[Side]) -> dict[Any, Any]:
    """The current state, once both servers report the same."""
    async def same() -> Any:
        return await current(a, room_id) == await current(b, room_id) or None

    try:
        await eventually(same, "the same current state on both servers", sides, timeout=90)
    except AssertionError:
        mine, theirs = await current(a, room_id), await current(b, room_id)
        raise AssertionError({k: (mine.get(k), theirs.get(k)) for k in set(mine) | set(theirs)
                              if mine.get(k) != theirs.get(k)}) from None
    return await current(a, room_id)


async def _seen(user: User, room_id: str, event_id: str) -> bool:
    return await user.event(room_id, event_id) is not None
