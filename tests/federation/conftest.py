"""Fixtures for federation tests: a test CA, a local DNS server, and the Synapse peer."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.federation.local_dns import LocalDns
from tests.federation.pki import TestCA


@pytest.fixture(scope="session")
def test_ca() -> Iterator[TestCA]:
    yield TestCA(Path(tempfile.mkdtemp(prefix="veche-ca-")))


@pytest.fixture
async def local_dns() -> AsyncIterator[LocalDns]:
    server = await LocalDns().start()
    yield server
    server.close()
