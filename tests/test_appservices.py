"""Application services: a bridge registered by a YAML file pings through the homeserver,
creates passwordless users in its exclusive namespace (which nobody else may take), acts
as them (identity assertion), and receives every event of the rooms its users are in, in
order, as transactions it may fail and get again under the same ID."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from tests.conftest import Client, free_port
from tests.sync_helpers import send


class Bridge:
    """The application service's side: a loopback HTTP server that records what it gets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hs_token = secrets.token_hex(16)
        self.as_token = secrets.token_hex(16)
        self.pings: list[dict[str, Any]] = []
        self.transactions: list[tuple[str, list[dict[str, Any]]]] = []
        self.auth: set[str] = set()
        self.attempts: list[str] = []
        self.fail_next = 0
        self.got = asyncio.Event()

    def registration(self) -> dict[str, Any]:
        return {"id": "test-bridge", "url": f"http://127.0.0.1:{self.port}",
                "as_token": self.as_token, "hs_token": self.hs_token, "sender_localpart": "_br_bot",
                "namespaces": {"users": [{"exclusive": True, "regex": "@_br_.*"}]}}

    async def ping(self, request: web.Request) -> web.Response:
        self.auth.add(request.headers.get("Authorization", ""))
        self.pings.append(await request.json())
        return web.json_response({})

    async def transaction(self, request: web.Request) -> web.Response:
        self.auth.add(request.headers.get("Authorization", ""))
        body = await request.json()
        self.attempts.append(request.match_info["txn"])
        if self.fail_next:
            self.fail_next -= 1
            return web.json_response({"errcode": "M_UNKNOWN"}, status=500)
        self.transactions.append((request.match_info["txn"], body["events"]))
        self.got.set()
        return web.json_response({})

    def events(self, room_id: str, event_type: str = "m.room.message") -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for _, evs in self.transactions:
            for ev in evs:
                if ev["room_id"] == room_id and ev["type"] == event_type:
                    seen.setdefault(ev["event_id"], ev)
        return list(seen.values())

    async def wait_for(self, pred: Any, timeout: float = 15) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"the bridge never got it; transactions: {self.transactions}"
            self.got.clear()
            try:
                await asyncio.wait_for(self.got.wait(), min(remaining, 1))
            except TimeoutError:
                pass


@pytest.fixture
async def bridge(make_server: Any, tmp_path: Path) -> Any:
    b = Bridge()
    app = web.Application()
    app.router.add_post("/_matrix/app/v1/ping", b.ping)
    app.router.add_put("/_matrix/app/v1/transactions/{txn}", b.transaction)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", b.port).start()
    path = tmp_path / "bridge.yaml"
    path.write_text(json.dumps(b.registration()))
    b.server = make_server({"VECHE_APP_SERVICE_CONFIG_FILES": json.dumps([str(path)])}, dev=True)
    yield b
    await runner.cleanup()


def as_client(bridge: Bridge, http: Any) -> Client:
    client = Client(http, bridge.server.base_url)
    client.access_token = bridge.as_token
    return client


async def test_ping_register_and_act_as_users(bridge: Bridge, http: Any) -> None:
    appservice = as_client(bridge, http)
    status, body = await appservice.post("/_matrix/client/v1/appservice/test-bridge/ping",
                                         {"transaction_id": "p1"})
    assert status == 200 and isinstance(body["duration_ms"], int), body
    assert bridge.pings == [{"transaction_id": "p1"}] and bridge.auth == {f"Bearer {bridge.hs_token}"}
    human = await Client(http, bridge.server.base_url).register()
    assert (await human.post("/_matrix/client/v1/appservice/test-bridge/ping", {}))[0] == 403
    assert (await appservice.post("/_matrix/client/v1/appservice/other/ping", {}))[0] == 403

    # The bridge's sender exists from the start; the bridge creates its users.
    assert (await appservice.get("account/whoami"))[1]["user_id"].startswith("@_br_bot:")
    status, body = await appservice.post("register", {
        "type": "m.login.application_service", "username": "_br_alice", "inhibit_login": True})
    assert status == 200, body
    alice_id = body["user_id"]
    assert "access_token" not in body
    status, body = await appservice.get("account/whoami", params={"user_id": alice_id})
    assert (status, body["user_id"]) == (200, alice_id)
    # Nobody else may take the namespace, or act in it, or outside it.
    for client, body, errcode in (
            (Client(http, bridge.server.base_url), {"username": "_br_mallory", "password": "pw-pw-pw-1",
                                                    "auth": {"type": "m.login.dummy"}}, "M_EXCLUSIVE"),
            (appservice, {"type": "m.login.application_service", "username": "plainuser"},
             "M_EXCLUSIVE")):
        status, out = await client.post("register", body)
        assert (status, out["errcode"]) == (400, errcode), out
    status, out = await Client(http, bridge.server.base_url).get(
        "register/available", params={"username": "_br_mallory"}, token=False)
    assert (status, out["errcode"]) == (400, "M_EXCLUSIVE")
    anon = Client(http, bridge.server.base_url)
    status, out = await anon.post("register", {"type": "m.login.application_service",
                                               "username": "_br_x"}, token=False)
    assert (status, out["errcode"]) == (401, "M_MISSING_TOKEN")
    status, out = await appservice.post("keys/upload", {}, params={"user_id": alice_id})
    assert (status, out["errcode"]) == (400, "M_UNKNOWN_DEVICE")
    for params, expected in (({"user_id": human.user_id}, (403, "M_EXCLUSIVE")),
                             ({"user_id": alice_id.replace("_br_alice", "_br_nobody")}, (403, "M_FORBIDDEN")),
                             ({"user_id": alice_id, "device_id": "NOPE"}, (400, "M_UNKNOWN_DEVICE"))):
        status, out = await appservice.get("account/whoami", params=params)
        assert (status, out["errcode"]) == expected, params


async def test_transactions_carry_the_rooms_of_its_users(bridge: Bridge, http: Any) -> None:
    appservice = as_client(bridge, http)
    status, body = await appservice.post("register", {
        "type": "m.login.application_service", "username": "_br_bob", "inhibit_login": True})
    bob_id = body["user_id"]
    human = await Client(http, bridge.server.base_url).register()
    room = (await human.post("createRoom", {"invite": [bob_id]}))[1]["room_id"]
    await bridge.wait_for(lambda: any(e["state_key"] == bob_id for e in bridge.events(room, "m.room.member")))
    status, _ = await appservice.post(f"join/{quote(room)}", {}, params={"user_id": bob_id})
    assert status == 200
    # A failing bridge gets the same transaction again.
    bridge.fail_next = 1
    sent = [await send(human, room, f"hello {i}") for i in range(5)]
    await bridge.wait_for(lambda: len(bridge.events(room)) == 5)
    assert [e["event_id"] for e in bridge.events(room)] == sent
    ids = [t for t, _ in bridge.transactions]
    retried = [t for t in set(bridge.attempts) if bridge.attempts.count(t) == 2]
    assert len(retried) == 1 and retried[0] in ids and len(ids) == len(set(ids))
    # The bridge's user speaks through identity assertion.
    status, body = await appservice.put(f"rooms/{quote(room)}/send/m.room.message/b1",
                                        {"msgtype": "m.text", "body": "from the bridge"},
                                        params={"user_id": bob_id})
    assert status == 200
    await bridge.wait_for(lambda: any(e["sender"] == bob_id for e in bridge.events(room)))
    # A room without the bridge's users is none of its business.
    other = (await human.post("createRoom", {}))[1]["room_id"]
    await send(human, other, "private")
    await send(human, room, "marker")
    await bridge.wait_for(lambda: any(e["content"].get("body") == "marker" for e in bridge.events(room)))
    assert bridge.events(other) == [] and bridge.events(other, "m.room.create") == []
    assert bridge.auth == {f"Bearer {bridge.hs_token}"}


def test_a_bad_registration_stops_the_server_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nas_token: a\nhs_token: b\nsender_localpart: bot\n"
                   "namespaces: {users: [{exclusive: true, regex: '@_x_('}]}\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("VECHE_")},
           "VECHE_DATA_DIR": str(tmp_path / "data"),
           "VECHE_APP_SERVICE_CONFIG_FILES": json.dumps([str(bad)])}
    proc = subprocess.run([sys.executable, "-m", "veche", "serve", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "namespaces.users[0].regex" in proc.stderr and "Traceback" not in proc.stderr
