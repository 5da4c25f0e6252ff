"""Media between Veche and Synapse (the session's peer): an image a Synapse user uploaded
downloads byte for byte through Veche (over Synapse's federation media endpoint), with a
thumbnail made here; and an image a Veche user uploaded downloads byte for byte through
Synapse, which asks Veche's /_matrix/federation/v1/media/download and reads its
multipart/mixed answer."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.peers import SynapsePeer, start_federating_veche
from tests.federation.pki import TestCA
from tests.test_media_helpers import image_of, png, raw, split_mxc

pytestmark = pytest.mark.timeout(900)  # the first run installs Synapse

V1 = "/_matrix/client/v1/media"


async def upload(http: aiohttp.ClientSession, base_url: str, token: str | None, data: bytes,
                 filename: str) -> str:
    async with http.post(f"{base_url}/_matrix/media/v3/upload", params={"filename": filename},
                         data=data, headers={"Authorization": f"Bearer {token}",
                                             "Content-Type": "image/png"}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["content_uri"]  # type: ignore[no-any-return]


async def test_media_both_ways_between_veche_and_synapse(
        make_server: Any, test_ca: TestCA, synapse: SynapsePeer,
        http: aiohttp.ClientSession) -> None:
    veche: ServerProcess = start_federating_veche(make_server, test_ca)
    alice = await Client(http, veche.base_url).register()
    bob = await Client(http, synapse.client_url).register()

    # Synapse's media through Veche.
    theirs = png(500, 400, (20, 120, 200))
    server, media_id = split_mxc(await upload(http, synapse.client_url, bob.access_token,
                                              theirs, "from-synapse.png"))
    assert server == synapse.server_name
    status, headers, got = await raw(http, "GET", f"{veche.base_url}{V1}/download/{server}/{media_id}",
                                     token=alice.access_token)
    assert status == 200, (got, veche.log())
    assert got == theirs and headers["Content-Type"] == "image/png"
    assert "from-synapse.png" in headers["Content-Disposition"]
    status, headers, thumb = await raw(
        http, "GET", f"{veche.base_url}{V1}/thumbnail/{server}/{media_id}?width=320&height=240",
        token=alice.access_token)
    assert status == 200 and image_of(thumb).size == (300, 240), headers

    # Veche's media through Synapse.
    ours = png(300, 200, (240, 200, 10))
    server, media_id = split_mxc(await upload(http, veche.base_url, alice.access_token, ours,
                                              "from-veche.png"))
    assert server == veche.server_name
    status, headers, got = await raw(
        http, "GET", f"{synapse.client_url}{V1}/download/{server}/{media_id}",
        token=bob.access_token)
    assert status == 200, (got, synapse.log())
    assert got == ours and headers["Content-Type"] == "image/png"
    assert "from-veche.png" in headers["Content-Disposition"]
    status, headers, thumb = await raw(
        http, "GET", f"{synapse.client_url}{V1}/thumbnail/{server}/{media_id}?width=96&height=96"
        "&method=crop", token=bob.access_token)
    assert status == 200 and image_of(thumb).size == (96, 96), (headers, synapse.log())
