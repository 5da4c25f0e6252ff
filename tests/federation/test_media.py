"""Media over federation against a remote the test plays (media_peer.py) and a signing
origin (fake_origin.py): remote media is fetched once, cached and served from the cache,
with thumbnails made here; a peer without the federation endpoints is asked the legacy one
with allow_remote=false; a file over Veche's limit is refused (502 M_TOO_LARGE) without
reading it all and without storing anything, whether its Content-Length says so, lies or is
absent; concurrent downloads share one fetch; a closed server asks nobody; and Veche's own
media is served to peers as multipart/mixed."""

from __future__ import annotations

import asyncio
import email.parser
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess, free_port
from tests.federation.fake_origin import F1, FakeServer
from tests.federation.media_peer import (
    BOUNDARY,
    MediaPeer,
    MiB,
    json_answer,
    multipart_body,
    multipart_headers,
)
from tests.federation.peers import federating_veche_env, start_federating_veche
from tests.federation.pki import TestCA
from tests.test_media_helpers import image_of, media_files, png, raw, split_mxc
from veche.core.federation_auth import sign_request

V1 = "/_matrix/client/v1/media"
LIMIT = 1 * MiB


@pytest.fixture
async def peer(test_ca: TestCA) -> AsyncIterator[MediaPeer]:
    server = await MediaPeer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield server
    await server.close()


@pytest.fixture
async def veche(make_server: Any, test_ca: TestCA) -> ServerProcess:
    return start_federating_veche(make_server, test_ca, VECHE_MEDIA__MAX_UPLOAD_SIZE=str(LIMIT))


async def get(http: aiohttp.ClientSession, client: Client, path: str) -> tuple[int, Any, bytes]:
    return await raw(http, "GET", client.base_url + path, token=client.access_token)


def fed_path(media_id: str) -> str:
    return f"{F1}/media/download/{media_id}"


async def test_remote_media_is_fetched_once_cached_and_thumbnailed(
        veche: ServerProcess, peer: MediaPeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register()
    image = png(640, 480)
    body = multipart_body(image, disposition="inline; filename*=utf-8''caf%C3%A9.png")
    peer.serve(fed_path("pic"), multipart_headers(len(body)), body)
    status, headers, got = await get(http, alice, f"{V1}/download/{peer.name}/pic")
    assert status == 200, got
    assert got == image and headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''caf%C3%A9.png"
    [asked] = peer.requests
    assert asked.startswith(fed_path("pic") + "?timeout_ms=")
    # From the cache from now on: downloads, a file name of the client's, thumbnails.
    status, headers, again = await get(http, alice, f"{V1}/download/{peer.name}/pic/x.png")
    assert (status, again) == (200, image)
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''x.png"
    status, headers, thumb = await get(
        http, alice, f"{V1}/thumbnail/{peer.name}/pic?width=96&height=96&method=crop")
    assert status == 200 and headers["Content-Type"] in ("image/png", "image/jpeg")
    assert image_of(thumb).size == (96, 96)
    assert len(peer.requests) == 1
    assert hashlib.sha256(image).hexdigest() in media_files(veche.data_dir)
    # The frozen unauthenticated routes do not serve other servers' media.
    status, _, _ = await raw(http, "GET", f"{veche.base_url}/_matrix/media/v3/download/{peer.name}/pic")
    assert status == 404
    # Unknown remote media is the remote's 404, not cached: asked again next time.
    peer.answers[fed_path("gone")] = json_answer(404, b'{"errcode":"M_NOT_FOUND"}')
    for _ in range(2):
        status, _, err = await get(http, alice, f"{V1}/download/{peer.name}/gone")
        assert status == 404 and b"M_NOT_FOUND" in err
    assert len(peer.asked(fed_path("gone"))) == 2
    assert not peer.asked("/_matrix/media/v3")  # a real 404 is no reason to fall back


async def test_older_peer_is_asked_the_legacy_endpoint(
        veche: ServerProcess, peer: MediaPeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register()
    data = b"plain old bytes " * 100
    # The federation endpoint is unknown there (the default answer: 404 M_UNRECOGNIZED).
    peer.serve(f"/_matrix/media/v3/download/{peer.name}/old",
               {"Content-Type": "text/plain", "Content-Length": str(len(data)),
                "Content-Disposition": 'attachment; filename="old.txt"'}, data)
    status, headers, got = await get(http, alice, f"{V1}/download/{peer.name}/old")
    assert (status, got) == (200, data)
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''old.txt"
    fed, legacy = peer.requests
    assert fed.startswith(fed_path("old"))
    assert legacy.startswith(f"/_matrix/media/v3/download/{peer.name}/old?")
    assert "allow_remote=false" in legacy
    assert (await get(http, alice, f"{V1}/download/{peer.name}/old"))[2] == data
    assert len(peer.requests) == 2

    # A Location part: the bytes are fetched from there (unsigned), and cached as any.
    moved = b"\x89PNG at the CDN " * 50
    body = (multipart_body(b"").split(b"Content-Type: image/png")[0]
            + f"Location: https://localhost:{peer.port}/cdn/x\r\n\r\n".encode()
            + b"\r\n--" + BOUNDARY + b"--\r\n")
    peer.serve(fed_path("elsewhere"), multipart_headers(len(body)), body)
    peer.serve("/cdn/x", {"Content-Type": "image/png", "Content-Length": str(len(moved))}, moved)
    status, headers, got = await get(http, alice, f"{V1}/download/{peer.name}/elsewhere")
    assert (status, got, headers["Content-Type"]) == (200, moved, "image/png")
    assert peer.requests[-1] == "/cdn/x"


async def test_unfrozen_legacy_routes_honour_allow_remote(
        make_server: Any, test_ca: TestCA, peer: MediaPeer, http: aiohttp.ClientSession) -> None:
    server = start_federating_veche(make_server, test_ca, VECHE_MEDIA__FREEZE_LEGACY_MEDIA=False)
    body = multipart_body(b"for old clients", content_type="text/plain", disposition="inline")
    peer.serve(fed_path("l"), multipart_headers(len(body)), body)
    url = f"{server.base_url}/_matrix/media/v3/download/{peer.name}/l"
    # allow_remote=false (what a peer falling back sends): only what is cached, nobody asked.
    assert (await raw(http, "GET", url + "?allow_remote=false"))[0] == 404
    assert not peer.requests
    assert (await raw(http, "GET", url))[2] == b"for old clients"
    assert (await raw(http, "GET", url + "?allow_remote=false"))[2] == b"for old clients"
    assert len(peer.requests) == 1


def cli(srv: ServerProcess, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "veche", "media", *args], env=srv.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


async def test_cached_remote_media_can_be_quarantined_and_purged(
        veche: ServerProcess, peer: MediaPeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register()
    data = b"remote bytes " * 1000
    body = multipart_body(data, content_type="text/plain", disposition="inline")
    peer.serve(fed_path("q"), multipart_headers(len(body)), body)
    url = f"{V1}/download/{peer.name}/q"
    assert (await get(http, alice, url))[2] == data
    await asyncio.to_thread(cli, veche, "quarantine", f"mxc://{peer.name}/q")
    assert (await get(http, alice, url))[0] == 404
    await asyncio.to_thread(cli, veche, "quarantine", "--undo", f"mxc://{peer.name}/q")
    assert (await get(http, alice, url))[2] == data
    assert len(peer.requests) == 1
    # Purged from the cache (and the store): fetched again when asked again.
    await asyncio.sleep(1.2)
    out = await asyncio.to_thread(cli, veche, "purge", "--older-than", "1s", "--remote-only")
    assert "purged 1" in out
    assert hashlib.sha256(data).hexdigest() not in media_files(veche.data_dir)
    assert (await get(http, alice, url))[2] == data
    assert len(peer.requests) == 2


@pytest.mark.parametrize("case", ["honest_length", "no_length", "lying_length",
                                  "lying_part_length", "legacy_no_length"])
async def test_oversized_remote_media_is_refused_and_not_stored(
        case: str, veche: ServerProcess, peer: MediaPeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register()
    before = media_files(veche.data_dir)
    total = 48 * MiB  # far more than socket buffers hold: a reader that stops is seen
    prefix = multipart_body(b"", part_headers="").rsplit(b"\r\n--", 1)[0]
    fed = fed_path("big")
    if case == "honest_length":
        peer.serve_stream(fed, multipart_headers(len(prefix) + total), prefix, total)
    elif case == "no_length":
        peer.serve_stream(fed, multipart_headers(None), prefix, total, chunked=True)
    elif case == "lying_length":
        # Claims less than the limit, sends far more: only what it claimed is read.
        peer.serve_stream(fed, multipart_headers(LIMIT // 2), prefix, total)
    elif case == "lying_part_length":
        prefix = multipart_body(b"", part_headers="Content-Length: 10\r\n").rsplit(b"\r\n--", 1)[0]
        peer.serve_stream(fed, multipart_headers(None), prefix, total, chunked=True)
    else:
        fed = f"/_matrix/media/v3/download/{peer.name}/big"
        peer.serve_stream(fed, {"Content-Type": "application/octet-stream"}, b"", total,
                          chunked=True)
    status, _, body = await get(http, alice, f"{V1}/download/{peer.name}/big")
    if case == "lying_length":
        assert status == 502, body  # a body cut short: refused as broken
    else:
        assert status == 502 and b'"M_TOO_LARGE"' in body, body
    # Veche stopped reading early (honest: before the body) and hung up.
    assert peer.sent[fed] < total // 4, peer.sent
    # Nothing was stored, not even a temp file; the next request asks the peer again.
    await asyncio.sleep(0.5)
    assert media_files(veche.data_dir) == before
    asked = len(peer.requests)
    assert (await get(http, alice, f"{V1}/download/{peer.name}/big"))[0] == 502
    assert len(peer.requests) == asked + (2 if case == "legacy_no_length" else 1)
    status, _, body = await get(http, alice, f"{V1}/thumbnail/{peer.name}/big?width=32&height=32")
    assert status == 502


async def test_a_file_of_exactly_the_limit_is_accepted(
        veche: ServerProcess, peer: MediaPeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register()
    data = bytes(range(256)) * (LIMIT // 256)
    body = multipart_body(data, content_type="application/octet-stream", disposition="attachment")
    peer.serve(fed_path("full"), multipart_headers(len(body)), body)  # over LIMIT with framing
    status, _, got = await get(http, alice, f"{V1}/download/{peer.name}/full")
    assert (status, got == data) == (200, True)
    body = multipart_body(data + b"!", content_type="application/octet-stream",
                          disposition="attachment")
    peer.serve(fed_path("over"), multipart_headers(len(body)), body)
    status, _, err = await get(http, alice, f"{V1}/download/{peer.name}/over")
    assert status == 502 and b'"M_TOO_LARGE"' in err


async def test_concurrent_downloads_share_one_fetch(
        veche: ServerProcess, peer: MediaPeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register()
    data = bytes(range(256)) * 2000
    body = multipart_body(data, content_type="application/octet-stream",
                          disposition="attachment")
    # Slow to answer: every request below arrives while the first fetch is under way.
    peer.serve(fed_path("slow"), multipart_headers(len(body)), body, delay_s=1.5)
    results = await asyncio.gather(*(get(http, alice, f"{V1}/download/{peer.name}/slow")
                                     for _ in range(6)))
    assert [(s, b == data) for s, _, b in results] == [(200, True)] * 6
    assert len(peer.requests) == 1


async def test_closed_server_asks_nobody(make_server: Any, test_ca: TestCA, peer: MediaPeer,
                                         http: aiohttp.ClientSession) -> None:
    server = make_server(federating_veche_env(test_ca, free_port(),
                                              VECHE_FEDERATION__ENABLED=False), dev=True)
    alice = await Client(http, server.base_url).register()
    data = multipart_body(b"x")
    peer.serve(fed_path("m"), multipart_headers(len(data)), data)
    for path in (f"{V1}/download/{peer.name}/m", f"{V1}/thumbnail/{peer.name}/m?width=9&height=9"):
        status, _, body = await get(http, alice, path)
        assert status == 404 and b'"M_NOT_FOUND"' in body, (path, body)
    assert not peer.requests
    # Nor does it serve its media to other servers: no federation routes at all.
    status, _, body = await raw(http, "GET", f"{server.base_url}{fed_path('m')}")
    assert status == 404 and b'"M_UNRECOGNIZED"' in body
    # Local media is unaffected.
    status, up = await alice.post("/_matrix/media/v3/upload", data=b"mine")
    assert status == 200, up
    assert (await get(http, alice, f"{V1}/download/{'/'.join(split_mxc(up['content_uri']))}"))[2] == b"mine"


async def test_local_media_is_served_to_peers_as_multipart(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register()
    image = png(400, 300)
    async with http.post(f"{veche.base_url}/_matrix/media/v3/upload?filename=r%C3%A9sum%C3%A9.png",
                         data=image, headers={"Authorization": f"Bearer {alice.access_token}",
                                              "Content-Type": "image/png"}) as r:
        assert r.status == 200
        _, media_id = split_mxc((await r.json())["content_uri"])

    async def fetch(target: str, signed: bool = True) -> tuple[int, Any, bytes]:
        headers = {}
        if signed:
            headers["Authorization"] = sign_request(origin.key, origin.name, veche.server_name,
                                                    "GET", target)
        return await raw(http, "GET", veche.base_url + target, headers=headers, encoded=True)

    status, headers, body = await fetch(f"{F1}/media/download/{media_id}")
    assert status == 200, body
    assert int(headers["Content-Length"]) == len(body)
    parts = parse_multipart(headers["Content-Type"], body)
    assert [p.get_content_type() for p in parts] == ["application/json", "image/png"]
    assert parts[0].get_payload(decode=True) == b"{}"
    assert parts[1].get_payload(decode=True) == image
    assert parts[1]["Content-Disposition"] == "inline; filename*=utf-8''r%C3%A9sum%C3%A9.png"
    status, headers, body = await fetch(f"{F1}/media/thumbnail/{media_id}?width=32&height=32&method=crop")
    assert status == 200, body
    json_part, thumb = parse_multipart(headers["Content-Type"], body)
    assert image_of(thumb.get_payload(decode=True)).size == (32, 32)
    # Signed requests only; media of this server only.
    assert (await fetch(f"{F1}/media/download/{media_id}", signed=False))[0] == 401
    assert (await fetch(f"{F1}/media/download/nosuchmedia"))[0] == 404


def parse_multipart(content_type: str, body: bytes) -> list[Any]:
    """An independent reader (the standard library's MIME parser) of what Veche sent."""
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.is_multipart()
    return list(message.get_payload())  # type: ignore[arg-type]
