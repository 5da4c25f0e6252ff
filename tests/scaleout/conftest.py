"""Three Veche processes on one PostgreSQL database and NATS, behind HAProxy with the
repository's deploy/haproxy.cfg: the deployment of README "Many processes", on loopback.

PostgreSQL only (SQLite serves one process). NATS is at VECHE_TEST_NATS (default
nats://127.0.0.1:4222); HAProxy comes from Debian's package, installed here when missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import BACKENDS, Client, PostgresTestDatabase, ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
BUS_URL = os.environ.get("VECHE_TEST_NATS", "nats://127.0.0.1:4222")


def _require_postgres() -> None:
    if "postgres" not in BACKENDS:
        pytest.skip("many processes share a PostgreSQL database; VECHE_TEST_BACKENDS has no postgres")


def _require_nats() -> None:
    parts = urlsplit(BUS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=2):
            return
    except OSError as e:
        pytest.fail(f"NATS is not reachable at {BUS_URL} ({e}): run nats-server -js there")


def _haproxy() -> str:
    found = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "haproxy"], capture_output=True,
                       timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
        if found:
            return found
    pytest.skip("HAProxy is not installed and cannot be (apt-get install haproxy needs root)")


def _wait_port(port: int, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


class Worker(ServerProcess):
    def __init__(self, name: str, data_dir: Path, db_url: str, env: dict[str, str],
                 dev: bool = True) -> None:
        super().__init__("postgres", data_dir, db_url, extra_env=env, dev=dev)
        self.name = name
        self.log_path = data_dir / f"{name}.log"
        self.args = ["--worker-name", name]
        self.log_level = "INFO"

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no clean stop, no goodbye on the bus
        self.proc.wait()
        self.proc = None


class Cluster:
    """Three processes sharing one database, one data directory (signing key, media) and
    one NATS, and HAProxy in front."""

    def __init__(self, env: dict[str, str] | None = None, n: int = 3, dev: bool = True) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="veche-cluster-"))
        self.pg = PostgresTestDatabase()
        self.lb_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.lb_port}"
        self.server_name = f"localhost:{self.lb_port}"
        self.env = {
            "VECHE_SERVER_NAME": self.server_name,
            "VECHE_BUS__URL": BUS_URL,
            "VECHE_LISTEN__TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "VECHE_FEDERATION__ENABLED": "false",
            **(env or {}),
        }
        self.workers = [Worker(f"w{i + 1}", self.tmp, self.pg.url, self.env, dev)
                        for i in range(n)]
        for w in self.workers:
            w.server_name = self.server_name  # one server, whichever process answers
        self.haproxy: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # The first one creates the schema; the others start together.
        self.workers[0].start()
        with ThreadPoolExecutor(len(self.workers)) as pool:
            for started in [pool.submit(w.start) for w in self.workers[1:]]:
                started.result()
        env = {**os.environ, "VECHE_LB_BIND": f"127.0.0.1:{self.lb_port}",
               **{f"VECHE_W{i + 1}": f"127.0.0.1:{w.port}" for i, w in enumerate(self.workers)}}
        log = (self.tmp / "haproxy.log").open("ab")
        self.haproxy = subprocess.Popen([_haproxy(), "-db", "-f", str(HAPROXY_CFG)], env=env,
                                        stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.lb_port, "haproxy", self.haproxy)

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.terminate()
            self.haproxy.wait(10)
        for w in self.workers:
            w.stop()
        self.pg.drop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} ---\n{w.log()[-3000:]}" for w in self.workers)


def client_on(http: aiohttp.ClientSession, base_url: str, like: Client) -> Client:
    """The same user and device as `like`, talking to another process."""
    c = Client(http, base_url)
    c.access_token, c.user_id, c.device_id = like.access_token, like.user_id, like.device_id
    return c


async def send(client: Client, room_id: str, body: str) -> str:
    from urllib.parse import quote

    status, resp = await client.put(
        f"rooms/{quote(room_id)}/send/m.room.message/{secrets.token_hex(8)}",
        {"msgtype": "m.text", "body": body})
    assert status == 200, (status, resp)
    return str(resp["event_id"])


AS_PORT = free_port()
AS_REGISTRATION = {
    "id": "cluster-bridge", "url": f"http://127.0.0.1:{AS_PORT}",
    "as_token": secrets.token_hex(16), "hs_token": secrets.token_hex(16),
    "sender_localpart": "_bridge_bot",
    "namespaces": {"users": [{"exclusive": True, "regex": "@_bridge_.*"}], "aliases": [],
                   "rooms": [{"exclusive": False, "regex": "!.*"}]},
}


class Recorder:
    """A loopback HTTP endpoint (an application service or a push gateway) that records the
    requests it is sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []  # answered with 200
        self.url = ""
        self.answering = asyncio.Event()  # cleared: requests wait for an answer
        self.answering.set()

    async def record(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.answering.wait()
        if request.transport is None or request.transport.is_closing():
            raise web.HTTPServiceUnavailable()  # the sender died waiting: nothing delivered
        self.requests.append((request.match_info.get("txn", ""), body))
        return web.json_response({})

    def event_ids(self, kind: str, room_id: str) -> list[str]:
        """The event IDs of `room_id` answered so far, as application-service transaction
        events ("appservice") or pushes ("push"), with repeats."""
        out = []
        for txn_id, body in self.requests:
            if kind == "appservice" and txn_id:
                out += [e["event_id"] for e in body.get("events", [])
                        if e.get("room_id") == room_id and e["type"] == "m.room.message"]
            elif kind == "push" and not txn_id and body["notification"].get("room_id") == room_id:
                out.append(body["notification"]["event_id"])
        return out


@pytest.fixture(scope="module")
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    app = web.Application()
    app.router.add_put("/_matrix/app/v1/transactions/{txn}", rec.record)
    app.router.add_post("/_matrix/push/v1/notify", rec.record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", AS_PORT).start()
    rec.url = f"http://127.0.0.1:{AS_PORT}"
    yield rec
    await runner.cleanup()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    as_file = Path(tempfile.mkdtemp(prefix="veche-as-")) / "bridge.yaml"
    as_file.write_text(json.dumps(AS_REGISTRATION))
    yield from started_cluster({
        "VECHE_APP_SERVICE_CONFIG_FILES": json.dumps([str(as_file)]),
        "VECHE_PUSH__ENABLED": "true",
        "VECHE_PUSH__IP_RANGE_ALLOWLIST": '["127.0.0.1/32"]',
    })
    shutil.rmtree(as_file.parent, ignore_errors=True)


def started_cluster(env: dict[str, str] | None = None, dev: bool = True) -> Iterator[Cluster]:
    """A module's cluster fixture: `yield from started_cluster(...)`."""
    _require_postgres()
    _require_nats()
    _haproxy()
    c = Cluster(env, dev=dev)
    try:
        c.start()
    except Exception:
        logs = c.logs()
        c.stop()
        pytest.fail(f"the cluster did not start:\n{logs}")
    yield c
    c.stop()
