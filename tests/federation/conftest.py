"""Fixtures for federation tests: a test CA, a local DNS server, the Synapse peer
(session-scoped: SYNAPSE_VENV or bench/.synapse-venv, installed from PyPI on first use), a
Veche that federates on loopback, and servers the tests play (`origin`: fake_origin.py,
`peer`: fake_peer.py)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.federation.fake_origin import FakeServer
from tests.federation.fake_peer import FakePeer
from tests.federation.https_servers import RecordingServer
from tests.federation.link import FederationLink
from tests.federation.local_dns import LocalDns
from tests.federation.peers import SynapsePeer, start_federating_veche, start_synapse_peer
from tests.federation.pki import TestCA


@pytest.fixture(scope="session")
def test_ca() -> Iterator[TestCA]:
    yield TestCA(Path(tempfile.mkdtemp(prefix="veche-ca-")))


@pytest.fixture
async def local_dns() -> AsyncIterator[LocalDns]:
    server = await LocalDns().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def synapse(test_ca: TestCA) -> Iterator[SynapsePeer]:
    """One Synapse for the whole session (it takes seconds to start): federating over TLS
    with the test CA, loopback peers allowed, no notaries, short retries. Its name's port is
    a relay's (`peer.link`) that a test may cut (tests/federation/link.py)."""
    link = FederationLink(0)
    peer = start_synapse_peer(Path(tempfile.mkdtemp(prefix="veche-synapse-")), test_ca,
                              name_port=link.port)
    link.target_port = peer.federation_port
    peer.link = link
    yield peer
    peer.stop()
    link.close()


@pytest.fixture
async def veche(make_server: Any, test_ca: TestCA) -> ServerProcess:
    return start_federating_veche(make_server, test_ca)


@pytest.fixture
async def origin(test_ca: TestCA) -> AsyncIterator[FakeServer]:
    server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield FakeServer(server)
    await server.close()


@pytest.fixture
async def peer(test_ca: TestCA) -> AsyncIterator[FakePeer]:
    fake = await FakePeer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield fake
    await fake.close()
