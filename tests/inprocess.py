"""A Veche server in the test process, served over HTTP on loopback, so that a test can
reach its storage and services (to persist hand-built events) while real clients use it."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator

from aiohttp.test_utils import TestServer

from tests.conftest import PostgresTestDatabase
from veche.config import Config, DatabaseConfig
from veche.server import HomeServer


@contextlib.asynccontextmanager
async def inprocess_server(backend: str, server_name: str) -> AsyncIterator[tuple[HomeServer, str]]:
    """(the server, its base URL) on `backend` ("sqlite" or "postgres"), removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="veche-inprocess-")
    pg = PostgresTestDatabase() if backend == "postgres" else None
    hs = HomeServer(Config(server_name=server_name, data_dir=tmp, dev=True,
                           database=DatabaseConfig(url=pg.url if pg else "")))
    site = TestServer(hs.make_app())
    await site.start_server()
    try:
        yield hs, str(site.make_url("")).rstrip("/")
    finally:
        await site.close()
        await hs.close()
        if pg is not None:
            pg.drop()
        shutil.rmtree(tmp, ignore_errors=True)
