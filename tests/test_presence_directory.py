"""Presence, the user directory and content reports."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import Client
from tests.sync_helpers import room_with, send, sync


async def test_presence_status_and_sync(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    first = await sync(bob, set_presence="offline")
    status, _ = await alice.put(f"presence/{quote(alice.user_id)}/status",
                                {"presence": "unavailable", "status_msg": "lunch"})
    assert status == 200
    status, got = await bob.get(f"presence/{quote(alice.user_id)}/status")
    assert status == 200 and got["presence"] == "unavailable" and got["status_msg"] == "lunch"
    body = await sync(bob, first["next_batch"], timeout="5000", set_presence="offline")
    events = [e for e in body["presence"]["events"] if e["sender"] == alice.user_id]
    assert events and events[-1]["content"]["presence"] == "unavailable"
    assert events[-1]["content"]["status_msg"] == "lunch"
    # syncing does not override a status the user chose; setting it does
    await sync(alice)
    status, got = await bob.get(f"presence/{quote(alice.user_id)}/status")
    assert got["presence"] == "unavailable"
    assert (await alice.put(f"presence/{quote(alice.user_id)}/status", {"presence": "online"}))[0] == 200
    status, got = await bob.get(f"presence/{quote(alice.user_id)}/status")
    assert got["presence"] == "online" and got["currently_active"] is True
    # validation and permissions
    assert (await alice.put(f"presence/{quote(alice.user_id)}/status", {"presence": "busy"}))[0] == 400
    assert (await bob.put(f"presence/{quote(alice.user_id)}/status", {"presence": "online"}))[0] == 403
    stranger = await make_client().register()
    assert (await stranger.get(f"presence/{quote(alice.user_id)}/status"))[0] == 403
    assert (await stranger.get(f"presence/{quote('@nobody:' + alice.user_id.split(':', 1)[1])}/status"))[0] == 404
    status, mine = await stranger.get(f"presence/{quote(stranger.user_id)}/status")
    assert status == 200 and mine["presence"] in ("online", "offline")


async def test_user_directory_search(make_client: Any) -> None:
    tag = secrets.token_hex(3)
    alice, bob, room_id = await room_with(make_client)
    assert (await bob.put(f"profile/{quote(bob.user_id)}/displayname", {"displayname": f"Bobby {tag}"}))[0] == 200
    stranger = await make_client().register()
    assert (await stranger.put(f"profile/{quote(stranger.user_id)}/displayname",
                               {"displayname": f"Hidden {tag}"}))[0] == 200
    status, body = await alice.post("user_directory/search", {"search_term": tag})
    assert status == 200
    assert [r["user_id"] for r in body["results"]] == [bob.user_id]
    assert body["results"][0]["display_name"] == f"Bobby {tag}"
    assert body["limited"] is False
    # by user ID
    localpart = bob.user_id[1:].split(":")[0]
    status, body = await alice.post("user_directory/search", {"search_term": localpart})
    assert bob.user_id in [r["user_id"] for r in body["results"]]
    # members of public rooms are findable by anyone
    status, pub = await stranger.post("createRoom", {"preset": "public_chat"})
    assert status == 200
    status, body = await alice.post("user_directory/search", {"search_term": tag})
    assert {r["user_id"] for r in body["results"]} == {bob.user_id, stranger.user_id}
    status, body = await alice.post("user_directory/search", {"search_term": tag, "limit": 1})
    assert len(body["results"]) == 1 and body["limited"] is True
    assert (await alice.post("user_directory/search", {}))[0] == 400
    assert (await alice.post("user_directory/search", {"search_term": 5}))[0] == 400


async def test_reports(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    event_id = await send(alice, room_id, "offensive")
    status, body = await bob.post(f"rooms/{quote(room_id)}/report/{quote(event_id)}", {"reason": "rude"})
    assert status == 200 and body == {}
    status, body = await bob.post(f"rooms/{quote(room_id)}/report", {"reason": "bad room"})
    assert status == 200
    status, body = await bob.post(f"users/{quote(alice.user_id)}/report", {"reason": "spam"})
    assert status == 200
    status, err = await bob.post(f"rooms/{quote(room_id)}/report/$missing", {"reason": "x"})
    assert status == 404
    stranger = await make_client().register()
    status, err = await stranger.post(f"rooms/{quote(room_id)}/report/{quote(event_id)}", {})
    assert status == 404
    status, err = await bob.post(f"rooms/{quote('!nope:example.org')}/report", {})
    assert status == 404
    status, err = await bob.post(f"rooms/{quote(room_id)}/report/{quote(event_id)}", {"reason": 3})
    assert status == 400


async def test_presence_goes_idle_then_offline(
    make_server: Any, http: aiohttp.ClientSession
) -> None:
    srv = make_server({"VECHE_PRESENCE__IDLE_AFTER_MS": "1500",
                       "VECHE_PRESENCE__OFFLINE_AFTER_MS": "4000"}, dev=True)
    alice, bob = Client(http, srv.base_url), Client(http, srv.base_url)
    await alice.register()
    await bob.register()
    status, room = await alice.post("createRoom", {"preset": "public_chat"})
    assert status == 200
    assert (await bob.post(f"join/{quote(room['room_id'])}", {}))[0] == 200

    async def alice_presence() -> str:
        status, got = await bob.get(f"presence/{quote(alice.user_id)}/status")
        assert status == 200
        return str(got["presence"])

    async def eventually(state: str, within: float) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while (seen := await alice_presence()) != state:
            assert asyncio.get_running_loop().time() < deadline, f"still {seen}, not {state}"
            await asyncio.sleep(0.25)

    # alice's client keeps syncing but she does nothing: online, then idle (unavailable)
    syncing = True

    async def client_loop() -> None:
        since = (await sync(alice))["next_batch"]
        while syncing:
            since = (await sync(alice, since, timeout="500"))["next_batch"]

    loop = asyncio.ensure_future(client_loop())
    await eventually("online", 2)
    await eventually("unavailable", 6)
    # sending a message is activity: online again
    await send(alice, room["room_id"], "back")
    await eventually("online", 3)
    # her client stops syncing: offline
    syncing = False
    await loop
    await eventually("offline", 10)
