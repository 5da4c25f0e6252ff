"""[federation] enabled = false: a closed server. No federation or key routes (404
M_UNRECOGNIZED), no TLS port even with [tls] set, no delegation, and no outbound requests:
a remote user's profile is "not found" without anything being sent."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from signedjson.key import generate_signing_key
from yarl import URL

from tests.conftest import Client, free_port
from tests.federation.https_servers import RecordingServer
from tests.federation.peers import federating_veche_env, start_federating_veche
from tests.federation.pki import TestCA
from veche.core.federation_auth import sign_request
from veche.core.server_keys import own_keys_response


@pytest.fixture
async def remote(test_ca: TestCA) -> AsyncIterator[RecordingServer]:
    """A would-be peer that answers any profile query and records what it is sent."""
    server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    server.responses["/_matrix/federation/v1/query/profile"] = (200, {"displayname": "R"}, {})
    yield server
    await server.close()


async def test_closed_server(make_server: Any, test_ca: TestCA, remote: RecordingServer,
                             http: aiohttp.ClientSession) -> None:
    tls_port = free_port()
    env = federating_veche_env(test_ca, tls_port, VECHE_FEDERATION__ENABLED=False,
                               VECHE_FEDERATION__WELL_KNOWN_SERVER="matrix.example.org:443")
    server = make_server(env, dev=True)
    for path in ("/_matrix/key/v2/server", "/_matrix/federation/v1/version",
                 "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab"):
        async with http.get(server.base_url + path) as r:
            assert (r.status, (await r.json())["errcode"]) == (404, "M_UNRECOGNIZED"), path
    async with http.post(server.base_url + "/_matrix/key/v2/query", json={"server_keys": {}}) as r:
        assert r.status == 404
    async with http.get(server.base_url + "/.well-known/matrix/server") as r:
        assert r.status == 404
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
    alice = await Client(http, server.base_url).register()
    status, body = await alice.get(f"profile/{quote(f'@r:localhost:{remote.port}')}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert not remote.seen


async def test_open_server_asks_the_remote(make_server: Any, test_ca: TestCA,
                                           remote: RecordingServer,
                                           http: aiohttp.ClientSession) -> None:
    """The same request on a federating server does reach the peer, signed: the closed
    server's silence above is its configuration, not an accident of the test."""
    server = make_server(federating_veche_env(
        test_ca, free_port(), VECHE_FEDERATION__WELL_KNOWN_SERVER="matrix.example.org:443"), dev=True)
    async with http.get(server.base_url + "/.well-known/matrix/server") as r:
        assert await r.json() == {"m.server": "matrix.example.org:443"}
    alice = await Client(http, server.base_url).register()
    status, body = await alice.get(f"profile/{quote(f'@r:localhost:{remote.port}')}")
    assert (status, body) == (200, {"displayname": "R"})
    [seen] = remote.seen
    assert seen.authorization and seen.authorization.startswith("X-Matrix ")
    assert f'destination="localhost:{remote.port}"' in seen.authorization
    assert seen.host == f"localhost:{remote.port}" and seen.sni == "localhost"


async def test_peers_outside_domain_allowlist_are_refused(
        make_server: Any, test_ca: TestCA, remote: RecordingServer,
        http: aiohttp.ClientSession) -> None:
    server = start_federating_veche(make_server, test_ca,
                                    VECHE_FEDERATION__DOMAIN_ALLOWLIST=["friend.test"])
    alice = await Client(http, server.base_url).register()
    status, _ = await alice.get(f"profile/{quote(f'@r:localhost:{remote.port}')}")
    assert status == 404 and not remote.seen
    # Incoming: a request from a server not on the list is refused before any key fetch.
    key = generate_signing_key("k")
    remote.responses["/_matrix/key/v2/server"] = (
        200, own_keys_response(f"localhost:{remote.port}", key, {}, 2**50), {})
    target = f"/_matrix/federation/v1/query/profile?user_id={quote(alice.user_id or '', safe='')}"
    auth = sign_request(key, f"localhost:{remote.port}", server.server_name, "GET", target)
    async with http.get(URL(server.base_url + target, encoded=True),
                        headers={"Authorization": auth}) as r:
        assert (r.status, (await r.json())["errcode"]) == (403, "M_FORBIDDEN")
    assert not remote.seen
