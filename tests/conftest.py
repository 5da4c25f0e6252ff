"""Test fixtures: real Veche servers (subprocesses over real HTTP) on SQLite and PostgreSQL.

Backends come from VECHE_TEST_BACKENDS (default "sqlite,postgres"). PostgreSQL is at
VECHE_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/postgres); when it is
asked for and unreachable the tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

BACKENDS = [b for b in os.environ.get("VECHE_TEST_BACKENDS", "sqlite,postgres").split(",") if b]
POSTGRES_ADMIN_URL = os.environ.get(
    "VECHE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresTestDatabase:
    """A fresh database per test session, dropped afterwards."""

    def __init__(self) -> None:
        import psycopg

        self.name = f"veche_test_{os.getpid()}_{secrets.token_hex(3)}"
        try:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.OperationalError as e:
            pytest.fail(f"PostgreSQL requested but unreachable at {POSTGRES_ADMIN_URL}: {e}")
        self.url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.name

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class ServerProcess:
    """`veche serve --dev` in a subprocess on a free loopback port."""

    def __init__(self, backend: str, data_dir: Path, db_url: str, extra_env: dict[str, str] | None = None,
                 dev: bool = True) -> None:
        self.backend = backend
        self.dev = dev
        self.data_dir = data_dir
        self.db_url = db_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server_name = f"localhost:{self.port}"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self.args: list[str] = []  # more `veche serve` options
        self.log_level = "WARNING"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VECHE_")}
        env.update({
            "VECHE_SERVER_NAME": self.server_name,
            "VECHE_DATA_DIR": str(self.data_dir),
            "VECHE_DATABASE__URL": self.db_url,
            **self.extra_env,
        })
        return env

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "veche", "serve", *(["--dev"] if self.dev else []),
             "--port", str(self.port), "--log-level", self.log_level, *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def restart(self) -> None:
        await asyncio.to_thread(self.stop)
        await asyncio.to_thread(self.start)

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-5000:]
        except OSError:
            return ""


# The shared server has a TURN relay configured (no relay runs: clients only get credentials).
TURN_SECRET = "test-turn-shared-secret"
# ... and an application service, which the conformance walk runs on WALK_AS_PORT.
WALK_AS_PORT = free_port()
WALK_AS = {
    "id": "walk-bridge", "url": f"http://127.0.0.1:{WALK_AS_PORT}",
    "as_token": secrets.token_hex(16), "hs_token": secrets.token_hex(16),
    "sender_localpart": "_walk_bot",
    "namespaces": {"users": [{"exclusive": True, "regex": "@_walk_.*"}], "aliases": [], "rooms": []},
}
_WALK_AS_FILE = Path(tempfile.mkdtemp(prefix="veche-as-")) / "walk-bridge.yaml"
_WALK_AS_FILE.write_text(json.dumps(WALK_AS))  # JSON is YAML
SESSION_SERVER_ENV = {
    "VECHE_TURN__URIS": '["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349"]',
    "VECHE_TURN__SHARED_SECRET": TURN_SECRET,
    "VECHE_APP_SERVICE_CONFIG_FILES": json.dumps([str(_WALK_AS_FILE)]),
}


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    backend = request.param
    tmp = Path(tempfile.mkdtemp(prefix=f"veche-{backend}-"))
    pg = None
    if backend == "sqlite":
        db_url = f"sqlite:///{tmp / 'veche.db'}"
    elif backend == "postgres":
        pg = PostgresTestDatabase()
        db_url = pg.url
    else:
        raise ValueError(f"unknown backend {backend}")
    srv = ServerProcess(backend, tmp, db_url, extra_env=SESSION_SERVER_ENV)
    srv.start()
    yield srv
    srv.stop()
    if pg is not None:
        pg.drop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def homeserver(server: ServerProcess) -> ServerProcess:
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    return server


@pytest.fixture
def make_server(server: ServerProcess) -> Iterator[Callable[..., ServerProcess]]:
    """Start extra servers of their own configuration (environment overrides) on the backend
    of the session's server; stopped afterwards."""
    started: list[tuple[ServerProcess, Path, PostgresTestDatabase | None]] = []

    def factory(env: dict[str, str], *, dev: bool = False) -> ServerProcess:
        tmp = Path(tempfile.mkdtemp(prefix=f"veche-{server.backend}-extra-"))
        pg = None
        if server.backend == "postgres":
            pg = PostgresTestDatabase()
            db_url = pg.url
        else:
            db_url = f"sqlite:///{tmp / 'veche.db'}"
        srv = ServerProcess(server.backend, tmp, db_url, extra_env=env, dev=dev)
        started.append((srv, tmp, pg))
        srv.start()
        return srv

    yield factory
    for srv, tmp, pg in started:
        srv.stop()
        if pg is not None:
            pg.drop()
        shutil.rmtree(tmp, ignore_errors=True)


# (method, spec path template) of every response checked against the spec in this session.
VALIDATED: set[tuple[str, str]] = set()


def check_against_spec(method: str, path: str, status: int, body: Any) -> None:
    """Validate a successful client-server API response against the spec's schema."""
    from tests.spec_schema import find_operation, validate_response

    if not (200 <= status < 300) or not path.startswith("/_matrix/client"):
        return
    path = path.split("?", 1)[0]
    # `/state/{type}` with an empty state key is documented as `/state/{type}/`.
    for candidate in (path, path + "/"):
        try:
            op = find_operation(method, candidate)
        except LookupError:
            continue
        validate_response(method, candidate, status, body)
        VALIDATED.add((op.method, op.template))
        return


class Client:
    """A minimal raw client-server API client for endpoint tests.

    Every successful response is validated against the spec's response schema.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url
        self.access_token: str | None = None
        self.user_id: str | None = None
        self.device_id: str | None = None

    async def request(
        self, method: str, path: str, json: Any = None, *, data: bytes | None = None,
        token: str | None | bool = True, params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if token is True and self.access_token:
            hdrs["Authorization"] = f"Bearer {self.access_token}"
        elif isinstance(token, str):
            hdrs["Authorization"] = f"Bearer {token}"
        if not path.startswith("/"):
            path = "/_matrix/client/v3/" + path
        async with self.session.request(
            method, self.base_url + path, json=json, data=data, params=params, headers=hdrs
        ) as resp:
            raw = await resp.read()
            try:
                body = await resp.json(content_type=None) if raw else None
            except ValueError:
                body = raw
        if resp.content_type == "application/json":
            check_against_spec(method, path, resp.status, body)
        return resp.status, body

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, json, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("PUT", path, json, **kw)

    async def delete(self, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("DELETE", path, json, **kw)

    async def register(self, localpart: str | None = None, password: str = "correct horse battery") -> Client:
        localpart = localpart or f"u{secrets.token_hex(5)}"
        status, body = await self.post("register", {
            "username": localpart, "password": password,
            "auth": {"type": "m.login.dummy"},
        }, token=False)
        if status == 401:  # UIA: start a session, then complete the dummy stage
            status, body = await self.post("register", {
                "username": localpart, "password": password,
                "auth": {"type": "m.login.dummy", "session": body["session"]},
            }, token=False)
        assert status == 200, (status, body)
        self.access_token = body["access_token"]
        self.user_id = body["user_id"]
        self.device_id = body["device_id"]
        return self


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_client(homeserver: ServerProcess, http: aiohttp.ClientSession) -> Any:
    def factory() -> Client:
        return Client(http, homeserver.base_url)

    return factory


def open_test_database(backend: str, prefix: str) -> Iterator[Any]:
    """A fresh database of `backend` with Veche's schema, opened in-process (one pooled
    connection); for a fixture: `yield from open_test_database(request.param, "...")`."""
    from veche.storage.database import open_database

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    pg = PostgresTestDatabase() if backend == "postgres" else None
    database = open_database(pg.url if pg else f"sqlite:///{tmp / 'veche.db'}", pool_size=1)
    try:
        yield database
    finally:
        database.close()
        if pg is not None:
            pg.drop()
        shutil.rmtree(tmp, ignore_errors=True)
