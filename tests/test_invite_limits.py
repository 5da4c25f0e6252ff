"""Invites: createRoom's `invite` list is capped and counts against the invite rate limit,
and nobody can be invited who has no account here (no invites waiting for a name)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import Client, ServerProcess


async def test_createroom_invite_list_is_capped(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    server = alice.user_id.split(":", 1)[1]
    too_many = [bob.user_id] + [f"@x{i}:{server}" for i in range(100)]
    status, err = await alice.post("createRoom", {"invite": too_many})
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM"), err
    assert (await alice.get("joined_rooms"))[1]["joined_rooms"] == []


async def test_unknown_local_users_cannot_be_invited(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    server = alice.user_id.split(":", 1)[1]
    nobody = f"@nobody{secrets.token_hex(4)}:{server}"
    status, err = await alice.post("createRoom", {"invite": [bob.user_id, nobody]})
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND"), err
    # Nothing was created: no room for alice, no invite for bob.
    assert (await alice.get("joined_rooms"))[1]["joined_rooms"] == []
    assert (await bob.get("sync"))[1].get("rooms", {}).get("invite", {}) == {}

    room = (await alice.post("createRoom", {}))[1]["room_id"]
    status, err = await alice.post(f"rooms/{quote(room)}/invite", {"user_id": nobody})
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND"), err
    status, members = await alice.get(f"rooms/{quote(room)}/members")
    assert [m["state_key"] for m in members["chunk"]] == [alice.user_id]
    # ... and someone who registers the name later finds no invite waiting.
    status, _ = await make_client().post("register", {
        "username": nobody[1:].split(":")[0], "password": "pw-123456",
        "auth": {"type": "m.login.dummy"}}, token=False)
    assert status == 200
    assert (await alice.post(f"rooms/{quote(room)}/invite", {"user_id": nobody}))[0] == 200


async def test_createroom_invites_count_against_the_invite_limit(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server({
        "VECHE_REGISTRATION__ENABLED": "true",
        "VECHE_RATE_LIMITS__REGISTRATION": json.dumps({"per_second": 100, "burst": 100}),
        "VECHE_RATE_LIMITS__INVITE": json.dumps({"per_second": 0.001, "burst": 5}),
    })
    async with aiohttp.ClientSession() as http:
        alice = await Client(http, srv.base_url).register()
        others = [(await Client(http, srv.base_url).register()).user_id for _ in range(6)]
        status, body = await alice.post("createRoom", {"invite": others[:5]})
        assert status == 200, body
        room = body["room_id"]
        # The five invites used up the budget: one more is refused, here or at creation.
        status, err = await alice.post(f"rooms/{quote(room)}/invite", {"user_id": others[5]})
        assert (status, err["errcode"]) == (429, "M_LIMIT_EXCEEDED"), err
        before = (await alice.get("joined_rooms"))[1]["joined_rooms"]
        status, err = await alice.post("createRoom", {"invite": others[5:]})
        assert (status, err["errcode"]) == (429, "M_LIMIT_EXCEEDED"), err
        assert (await alice.get("joined_rooms"))[1]["joined_rooms"] == before
