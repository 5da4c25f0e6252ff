"""Real clients and the media repository: matrix-nio and matrix-js-sdk each upload an image
and a file; another user downloads both byte-identical and gets thumbnails of the requested
size and method."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from pathlib import Path
from typing import Any

from nio import DownloadResponse, ResizingMethod, ThumbnailResponse, UploadResponse
from PIL import Image

from tests.integration import nio_scenario
from tests.integration.test_clients import _important, _run_node, _server_log_tail, js_scenario

__all__ = ["js_scenario"]  # the npm-installing fixture, shared with test_clients


def _image() -> bytes:
    img = Image.new("RGB", (1024, 768), (30, 90, 160))
    for x in range(0, 1024, 7):
        img.putpixel((x, x % 768), (255, 255, 0))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


async def test_nio_media(homeserver: Any) -> None:
    base = homeserver.base_url
    users = []
    for name in ("alice", "bob"):
        localpart = f"nio{name}{secrets.token_hex(3)}"
        user_id = await nio_scenario.register(base, localpart, "media-password")
        users.append(await nio_scenario.login(base, localpart, "media-password", user_id))
    alice, bob = users
    try:
        image = _image()
        document = hashlib.sha256(b"doc").digest() * 4096 + "наконец ünïcode".encode()
        uris = {}
        for data, ctype, name in ((image, "image/png", "photo.png"),
                                  (document, "application/octet-stream", "notes ü.bin")):
            resp, _ = await alice.upload(io.BytesIO(data), content_type=ctype, filename=name,
                                         filesize=len(data))
            assert isinstance(resp, UploadResponse), resp
            uris[name] = resp.content_uri
        for data, ctype, name in ((image, "image/png", "photo.png"),
                                  (document, "application/octet-stream", "notes ü.bin")):
            got = await bob.download(mxc=uris[name])
            assert isinstance(got, DownloadResponse), got
            assert got.body == data and got.content_type == ctype
            assert got.filename == name, got.filename
        server, media_id = uris["photo.png"][6:].split("/")
        for (w, h, method), size in (((32, 32, ResizingMethod.crop), (32, 32)),
                                     ((96, 96, ResizingMethod.crop), (96, 96)),
                                     ((320, 240, ResizingMethod.scale), (320, 240)),
                                     ((640, 480, ResizingMethod.scale), (640, 480))):
            thumb = await bob.thumbnail(server, media_id, w, h, method)
            assert isinstance(thumb, ThumbnailResponse), thumb
            assert Image.open(io.BytesIO(thumb.body)).size == size, (w, h, method)
        thumb = await bob.thumbnail(server, uris["notes ü.bin"][6:].split("/")[1], 32, 32)
        assert not isinstance(thumb, ThumbnailResponse)
    finally:
        for c in users:
            await c.close()


async def test_js_sdk_media(homeserver: Any, js_scenario: Path) -> None:
    script = js_scenario.parent / "media.mjs"
    rc, out, err = await _run_node(script, homeserver.base_url, "media")
    assert rc == 0, f"js media story exited {rc}:\n{_important(err)}{_server_log_tail(homeserver)}"
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1])
    assert result["ok"] is True, result
