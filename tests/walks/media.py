"""Walk: the authenticated media endpoints (/_matrix/client/v1/media/...).

Downloads and thumbnails answer bytes, not JSON: the walk checks them itself (status, type,
bytes) and records them as checked. URL previews are off by default, so that step runs on a
second server configured to allow a page served on 127.0.0.1.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web
from PIL import Image

from tests import conftest
from tests.spec_schema import find_operation
from tests.walks import WalkContext

V1 = "/_matrix/client/v1/media"


def _checked(method: str, path: str) -> None:
    op = find_operation(method, path)
    conftest.VALIDATED.add((op.method, op.template))


async def _bytes(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, str, bytes]:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, resp.content_type, await resp.read()


async def walk(ctx: WalkContext) -> None:
    alice, bob, ok = ctx.alice, ctx.bob, ctx.ok
    base = ctx.homeserver.base_url
    await ok(await alice.get(f"{V1}/config"))

    out = io.BytesIO()
    Image.new("RGB", (400, 300), (10, 120, 200)).save(out, "PNG")
    image = out.getvalue()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/_matrix/media/v3/upload?filename=walk.png", data=image,
                                headers={"Authorization": f"Bearer {alice.access_token}",
                                         "Content-Type": "image/png"}) as resp:
            assert resp.status == 200, await resp.text()
            server, media_id = (await resp.json())["content_uri"][6:].split("/")
        for path in (f"{V1}/download/{server}/{media_id}", f"{V1}/download/{server}/{media_id}/walk.png"):
            status, ctype, body = await _bytes(session, base + path, bob.access_token)
            assert status == 200 and ctype == "image/png" and body == image
            _checked("GET", path)
        path = f"{V1}/thumbnail/{server}/{media_id}"
        status, ctype, body = await _bytes(session, f"{base}{path}?width=96&height=96&method=crop",
                                           bob.access_token)
        assert status == 200 and Image.open(io.BytesIO(body)).size == (96, 96)
        _checked("GET", path)
        await _preview_walk(ctx, session)


async def _preview_walk(ctx: WalkContext, session: aiohttp.ClientSession) -> None:
    page = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text='<meta property="og:title" content="Walk">', content_type="text/html")

    page.router.add_get("/", handler)
    runner = web.AppRunner(page)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    tmp = Path(tempfile.mkdtemp(prefix="veche-walk-preview-"))
    pg = None
    if ctx.homeserver.backend == "postgres":
        pg = conftest.PostgresTestDatabase()
        db_url = pg.url
    else:
        db_url = f"sqlite:///{tmp / 'veche.db'}"
    srv = conftest.ServerProcess(ctx.homeserver.backend, tmp, db_url, extra_env={
        "VECHE_MEDIA__URL_PREVIEW__ENABLED": "true",
        "VECHE_MEDIA__URL_PREVIEW__IP_RANGE_ALLOWLIST": '["127.0.0.1/32"]'}, dev=True)
    try:
        srv.start()
        client = await conftest.Client(session, srv.base_url).register()
        og = await ctx.ok(await client.get(f"{V1}/preview_url",
                                           params={"url": f"http://127.0.0.1:{port}/"}))
        assert og == {"og:title": "Walk"}, og
    finally:
        srv.stop()
        if pg is not None:
            pg.drop()
        shutil.rmtree(tmp, ignore_errors=True)
        await runner.cleanup()
