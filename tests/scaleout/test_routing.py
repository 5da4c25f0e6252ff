"""deploy/haproxy.cfg's choice of process: what adds an event to a room goes to that room's
process whoever sends it, everything else to the client's process (by access token).

The processes behind HAProxy here are three small HTTP servers that answer with their own
name: the balancer's choice is what is under test, and a Veche process does not say which
one it is."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import free_port
from tests.scaleout.conftest import HAPROXY_CFG, _haproxy, _wait_port

C = "/_matrix/client/v3"


@pytest.fixture
async def balancer() -> AsyncIterator[str]:
    haproxy = _haproxy()
    runners, ports = [], []
    for i in range(3):
        name = f"w{i + 1}"

        async def answer(request: web.Request, name: str = name) -> web.Response:
            return web.json_response({"worker": name})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        ports.append(free_port())
        await web.TCPSite(runner, "127.0.0.1", ports[-1]).start()
        runners.append(runner)
    lb_port = free_port()
    env = {**os.environ, "VECHE_LB_BIND": f"127.0.0.1:{lb_port}",
           **{f"VECHE_W{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(ports)}}
    with tempfile.TemporaryDirectory() as tmp:
        log = (Path(tmp) / "haproxy.log").open("ab")
        proc = subprocess.Popen([haproxy, "-db", "-f", str(HAPROXY_CFG)], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            _wait_port(lb_port, "haproxy", proc)
            yield f"http://127.0.0.1:{lb_port}"
        finally:
            proc.terminate()
            proc.wait(10)
            for runner in runners:
                await runner.cleanup()


async def _worker(http: aiohttp.ClientSession, base: str, method: str, path: str,
                  token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, base + path, headers=headers, json={}) as resp:
        assert resp.status == 200
        return str((await resp.json())["worker"])


async def test_a_rooms_events_go_to_one_process_whoever_sends_them(balancer: str) -> None:
    rooms = [f"!room{i}:example.org" for i in range(12)]
    tokens = [f"token-{i}" for i in range(12)]
    async with aiohttp.ClientSession() as http:
        by_room: dict[str, set[str]] = {}
        for room in rooms:
            r = quote(room, safe="")
            for n, token in enumerate(tokens):
                for method, path in [
                    ("PUT", f"{C}/rooms/{r}/send/m.room.message/t{n}"),
                    ("PUT", f"{C}/rooms/{r}/state/m.room.topic/"),
                    ("PUT", f"{C}/rooms/{r}/redact/$e/t{n}"),
                    ("POST", f"{C}/rooms/{r}/invite"),
                    ("POST", f"{C}/rooms/{r}/leave"),
                    ("POST", f"/_matrix/client/r0/rooms/{r}/kick"),
                ]:
                    by_room.setdefault(room, set()).add(
                        await _worker(http, balancer, method, path, token))
            # The same room ID, encoded otherwise by another client, is the same room.
            by_room[room].add(await _worker(http, balancer, "POST",
                                            f"{C}/join/{quote(room, safe='!')}", tokens[0]))
            by_room[room].add(await _worker(http, balancer, "POST",
                                            f"{C}/rooms/{quote(room, safe='!:')}/join", None))
        assert all(len(w) == 1 for w in by_room.values()), by_room
        # ... and the rooms are spread over the processes.
        assert len({w for ws in by_room.values() for w in ws}) > 1

        # A client's other requests (reads of a room included) go to its own process.
        by_token: dict[str, set[str]] = {}
        for token in tokens:
            for method, path in [
                ("GET", f"{C}/sync?timeout=0"),
                ("GET", f"{C}/rooms/{quote(rooms[0], safe='')}/state/m.room.topic/"),
                ("GET", f"{C}/rooms/{quote(rooms[1], safe='')}/messages"),
                ("PUT", f"{C}/rooms/{quote(rooms[2], safe='')}/typing/@u:example.org"),
                ("POST", f"{C}/rooms/{quote(rooms[3], safe='')}/receipt/m.read/$e"),
                ("POST", f"{C}/keys/upload"),
            ]:
                by_token.setdefault(token, set()).add(
                    await _worker(http, balancer, method, path, token))
        assert all(len(w) == 1 for w in by_token.values()), by_token
        assert len({w for ws in by_token.values() for w in ws}) > 1

        # Without a token or a room: spread around.
        spread = Counter([await _worker(http, balancer, "GET", f"{C}/login")
                          for _ in range(30)])
        assert len(spread) == 3, spread
