"""URL previews: off by default; when on, OpenGraph from a page, and SSRF refusals.

Only 127.0.0.1 is ever connected to: the refusals of other private addresses happen before
any connection attempt.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Client, ServerProcess

V1 = "/_matrix/client/v1/media"
PAGE = """<!doctype html><html><head><title>Fallback title</title>
<meta property="og:title" content="Veche &amp; friends">
<meta property="og:description" content="A page served on loopback">
<meta property="og:image" content="mxc://example.org/abc">
</head><body>hello</body></html>"""


@pytest.fixture
async def page_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A web page on 127.0.0.1 (and a redirect to it); records the paths requested."""
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text=PAGE, content_type="text/html")

    async def plain(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="<title>Only a title</title>", content_type="text/html")

    async def redirect_local(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound(request.query["to"])

    async def huge(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"<p>" + b"x" * 65536)
        return resp

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/plain", plain)
    app.router.add_get("/redirect", redirect_local)
    app.router.add_get("/huge", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


async def preview(client: Client, url: str) -> tuple[int, Any]:
    return await client.get(f"{V1}/preview_url", params={"url": url, "ts": "0"})


async def test_previews_are_off_by_default(homeserver: ServerProcess, make_client: Any,
                                           page_server: tuple[str, list[str]]) -> None:
    base, hits = page_server
    alice = await make_client().register()
    status, body = await preview(alice, f"{base}/page")
    assert status == 404 and body["errcode"] == "M_UNRECOGNIZED"
    assert hits == []


async def test_preview_of_an_allowed_page(make_server: Any, http: aiohttp.ClientSession,
                                          page_server: tuple[str, list[str]]) -> None:
    base, hits = page_server
    srv = make_server({"VECHE_MEDIA__URL_PREVIEW__ENABLED": "true",
                       "VECHE_MEDIA__URL_PREVIEW__IP_RANGE_ALLOWLIST": json.dumps(["127.0.0.1/32"]),
                       "VECHE_MEDIA__URL_PREVIEW__MAX_RESPONSE_BYTES": str(1024 * 1024)}, dev=True)
    alice = await Client(http, srv.base_url).register()
    status, og = await preview(alice, f"{base}/page")
    assert status == 200, og
    assert og["og:title"] == "Veche & friends"
    assert og["og:description"] == "A page served on loopback"
    assert og["og:image"] == "mxc://example.org/abc"
    status, og = await preview(alice, f"{base}/plain")
    assert status == 200 and og == {"og:title": "Only a title"}
    # Cached: asking again does not fetch again.
    n = len(hits)
    assert (await preview(alice, f"{base}/page"))[0] == 200
    assert len(hits) == n
    # A redirect to an allowed page is followed.
    status, og = await preview(alice, f"{base}/redirect?to=/page")
    assert status == 200 and og["og:title"] == "Veche & friends"
    # A redirect to a refused address is refused at that hop, before connecting to it.
    for target in ("http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/"):
        status, body = await preview(alice, f"{base}/redirect?to={target}")
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", (target, body)
    # Too big a page is cut off.
    status, body = await preview(alice, f"{base}/huge")
    assert status == 502 and body["errcode"] == "M_TOO_LARGE", body
    for bad in ("ftp://127.0.0.1/", "not a url", "http://"):
        status, body = await preview(alice, bad)
        assert status in (400, 403), (bad, body)
    status, body = await alice.get(f"{V1}/preview_url")
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"


async def test_private_targets_are_refused_by_default(make_server: Any, http: aiohttp.ClientSession,
                                                      page_server: tuple[str, list[str]]) -> None:
    base, hits = page_server
    port = base.rsplit(":", 1)[1]
    srv = make_server({"VECHE_MEDIA__URL_PREVIEW__ENABLED": "true"}, dev=True)
    alice = await Client(http, srv.base_url).register()
    for url in (f"{base}/page", f"http://localhost:{port}/page", f"http://[::1]:{port}/page",
                "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0/",
                "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/", "http://100.64.0.1/",
                "http://[fe80::1]/", "http://192.168.1.1/", "http://172.16.0.1/"):
        status, body = await preview(alice, url)
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", (url, body)
    assert hits == []
