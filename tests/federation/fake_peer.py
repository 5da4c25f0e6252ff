"""A small federating server played by the test, on loopback HTTPS with the test CA: it
publishes its keys, records the transactions it is sent (or refuses them while `up` is
false), and signs requests and events of its own users to a Veche."""

from __future__ import annotations

import ssl
import time
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from signedjson.key import generate_signing_key
from yarl import URL

from tests.federation.pki import CertFiles
from veche.core.events import compute_event_id, sign_event
from veche.core.federation_auth import sign_request
from veche.core.room_versions import KNOWN_ROOM_VERSIONS
from veche.core.server_keys import own_keys_response


class FakePeer:
    def __init__(self, cert: CertFiles) -> None:
        self.cert = cert
        self.key = generate_signing_key("f1")
        self.port = 0
        self.up = True
        self.transactions: list[dict[str, Any]] = []
        self.refused = 0
        self._runner: web.AppRunner | None = None

    @property
    def name(self) -> str:
        return f"localhost:{self.port}"

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    async def start(self) -> FakePeer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert.cert, self.cert.key)
        app = web.Application()
        app.router.add_get("/_matrix/key/v2/server", self._keys)
        app.router.add_put("/_matrix/federation/v1/send/{txn}", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _keys(self, request: web.Request) -> web.Response:
        now = int(time.time() * 1000)
        return web.json_response(own_keys_response(self.name, self.key, {}, now + 3600_000))

    async def _send(self, request: web.Request) -> web.Response:
        if not self.up:
            self.refused += 1
            return web.json_response({"errcode": "M_UNKNOWN", "error": "down"}, status=503)
        body = await request.json()
        body["txn_id"] = request.match_info["txn"]
        body["authorization"] = request.headers.get("Authorization")
        self.transactions.append(body)
        return web.json_response({"pdus": {}})

    def received_pdus(self) -> list[dict[str, Any]]:
        return [p for t in self.transactions for p in t["pdus"]]

    # --- acting as the origin -----------------------------------------------------------
    async def request(self, http: aiohttp.ClientSession, veche: Any, method: str, target: str,
                      content: Any = None) -> tuple[int, Any]:
        """A signed request to a Veche's client listener (which serves federation too)."""
        auth = sign_request(self.key, self.name, veche.server_name, method, target, content)
        async with http.request(method, URL(veche.base_url + target, encoded=True),
                                json=content, headers={"Authorization": auth}) as r:
            return r.status, await r.json()

    def sign(self, event: dict[str, Any], room_version: str) -> dict[str, Any]:
        rv = KNOWN_ROOM_VERSIONS[room_version]
        return sign_event(event, self.name, self.key, rv)

    async def join(self, http: aiohttp.ClientSession, veche: Any, room_id: str, user_id: str,
                   versions: tuple[str, ...] = ("10", "11", "12")) -> tuple[int, Any, str]:
        """make_join then send_join; (status, send_join answer, the join's event ID)."""
        ver = "&".join(f"ver={v}" for v in versions)
        status, made = await self.request(
            http, veche, "GET",
            f"/_matrix/federation/v1/make_join/{quote(room_id)}/{quote(user_id)}?{ver}")
        if status != 200:
            return status, made, ""
        rv = made["room_version"]
        event = {**made["event"], "origin_server_ts": int(time.time() * 1000)}
        signed = self.sign(event, rv)
        event_id = compute_event_id(signed, KNOWN_ROOM_VERSIONS[rv])
        status, answer = await self.request(
            http, veche, "PUT",
            f"/_matrix/federation/v2/send_join/{quote(room_id)}/{quote(event_id)}"
            "?omit_members=true", signed)
        return status, answer, event_id
