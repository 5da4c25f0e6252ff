"""Fixtures for federation tests: a test CA, a local DNS server, and the Synapse peer
(session-scoped: SYNAPSE_VENV or bench/.synapse-venv, installed from PyPI on first use)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.federation.link import FederationLink
from tests.federation.local_dns import LocalDns
from tests.federation.peers import SynapsePeer, start_synapse_peer
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
