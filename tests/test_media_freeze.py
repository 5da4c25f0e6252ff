"""The freeze of the deprecated unauthenticated /_matrix/media/v3 download and thumbnail
routes (spec 1.12, content repository): media uploaded before it is still served there,
media uploaded since only through the authenticated /_matrix/client/v1/media routes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

from tests.conftest import Client, ServerProcess
from tests.test_media import LEGACY, V1, assert_safe_headers, upload
from tests.test_media_helpers import png, raw, split_mxc


def _sql(srv: ServerProcess, sql: str) -> Any:
    if srv.backend == "sqlite":
        with sqlite3.connect(srv.db_url.removeprefix("sqlite:///")) as c:
            return c.execute(sql).fetchone()
    import psycopg

    with psycopg.connect(srv.db_url, autocommit=True) as c:
        cur = c.execute(sql)
        return cur.fetchone() if cur.description else None


async def test_legacy_routes_serve_only_media_from_before_the_freeze(
        make_server: Any, http: Any) -> None:
    srv = make_server({}, dev=True)
    alice = await Client(http, srv.base_url).register()
    (frozen_at,) = _sql(srv, "SELECT frozen_ts FROM legacy_media_freeze")
    assert abs(frozen_at - time.time() * 1000) < 120_000  # recorded at the first start

    # An upgrade: this media predates the version that froze the legacy routes.
    image = png(300, 200)
    old_image = split_mxc(await upload(http, srv.base_url, alice.access_token, image, "image/png"))
    html = b"<html><script>alert(1)</script></html>"
    old_html = split_mxc(await upload(http, srv.base_url, alice.access_token, html, "text/html"))
    await asyncio.to_thread(srv.stop)
    _sql(srv, f"UPDATE legacy_media_freeze SET frozen_ts = {int(time.time() * 1000) + 1}")
    await asyncio.to_thread(srv.start)
    await asyncio.sleep(0.01)
    new_image = split_mxc(await upload(http, srv.base_url, alice.access_token, image, "image/png"))
    # A restart does not move the freeze.
    await asyncio.to_thread(srv.stop)
    await asyncio.to_thread(srv.start)

    base = srv.base_url
    thumb = "?width=32&height=32&method=crop"
    status, headers, body = await raw(http, "GET", f"{base}{LEGACY}/download/{'/'.join(old_image)}")
    assert status == 200 and body == image
    assert_safe_headers(headers)
    status, headers, body = await raw(http, "GET", f"{base}{LEGACY}/download/{'/'.join(old_html)}")
    assert status == 200 and body == html and headers["Content-Disposition"].startswith("attachment")
    assert_safe_headers(headers)
    status, _, legacy_thumb = await raw(http, "GET", f"{base}{LEGACY}/thumbnail/{'/'.join(old_image)}{thumb}")
    status2, _, v1_thumb = await raw(http, "GET", f"{base}{V1}/thumbnail/{'/'.join(old_image)}{thumb}",
                                     alice.access_token)
    assert status == status2 == 200 and legacy_thumb == v1_thumb

    for path in (f"download/{'/'.join(new_image)}", f"download/{'/'.join(new_image)}/a.png",
                 f"thumbnail/{'/'.join(new_image)}{thumb}"):
        status, _, err = await raw(http, "GET", f"{base}{LEGACY}/{path}")
        assert status == 404 and b"M_NOT_FOUND" in err and b"/_matrix/client/v1/media" in err, path
        status, _, _ = await raw(http, "GET", f"{base}{V1}/{path}", alice.access_token)
        assert status == 200, path


async def test_freeze_can_be_turned_off(make_server: Any, http: Any) -> None:
    srv = make_server({"VECHE_MEDIA__FREEZE_LEGACY_MEDIA": "false"}, dev=True)
    alice = await Client(http, srv.base_url).register()
    server, media_id = split_mxc(await upload(http, srv.base_url, alice.access_token, b"new bytes"))
    status, _, body = await raw(http, "GET", f"{srv.base_url}{LEGACY}/download/{server}/{media_id}")
    assert status == 200 and body == b"new bytes"
