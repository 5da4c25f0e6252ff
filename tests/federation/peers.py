"""Federating servers for tests, on loopback with the test CA: Synapse and the federating
Veche's environment come from bench/peers.py (the federation benchmark shares them); here, a
Veche started the tests' way (the session's database backend)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.peers import (
    SYNAPSE_FEDERATION_CONFIG,
    SynapsePeer,
    federating_veche_env,
    start_synapse_peer,
    wait_for_port,
)
from bench.servers import free_port

from tests.conftest import ServerProcess
from tests.federation.link import FederationLink
from tests.federation.pki import TestCA

__all__ = ["SYNAPSE_FEDERATION_CONFIG", "SynapsePeer", "federating_veche_env",
           "start_federating_veche", "start_synapse_peer", "wait_for_port"]


def start_federating_veche(make_server: Callable[..., ServerProcess], ca: TestCA,
                           host: str = "localhost", link: FederationLink | None = None,
                           **extra: Any) -> ServerProcess:
    """A Veche (dev mode, the session's database backend) federating on a TLS port; named
    after `link`'s port when given (a relay the caller made with FederationLink(0), pointed
    here at the TLS port)."""
    tls_port = free_port()
    name_port = link.port if link is not None else tls_port
    if link is not None:
        link.target_port = tls_port
    srv = make_server(federating_veche_env(ca, tls_port, host, name_port, **extra), dev=True)
    srv.server_name = f"{host}:{name_port}"
    srv.tls_port = tls_port  # type: ignore[attr-defined]
    wait_for_port(tls_port)
    return srv
