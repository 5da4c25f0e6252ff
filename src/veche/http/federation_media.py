"""This server's media served to other servers (spec: server-server "Content Repository"):
/_matrix/federation/v1/media/download/{mediaId} and /thumbnail/{mediaId}, X-Matrix signed,
answered as multipart/mixed: a JSON part (`{}`), then the bytes with their Content-Type and
Content-Disposition. Only local media: a server asks the media's own server.

The legacy freeze does not apply here: these are the authenticated endpoints."""

from __future__ import annotations

import os
import secrets

from aiohttp import web

from veche.errors import not_found
from veche.http.base import hs_of
from veche.http.federation import FEDERATION_V1, federation_origin
from veche.http.media import disposition, thumbnail_params, timeout_ms
from veche.media import multipart

federation_routes = web.RouteTableDef()
CHUNK = 64 * 1024


async def _multipart(request: web.Request, sha256: str, content_type: str,
                     filename: str | None) -> web.StreamResponse:
    media = hs_of(request).media
    boundary = secrets.token_hex(16)
    head = multipart.head(boundary, content_type, disposition(content_type, filename))
    tail = multipart.tail(boundary)
    try:
        f = await media.store.open(sha256)
    except FileNotFoundError:
        raise not_found("Media content is missing") from None
    try:
        resp = web.StreamResponse(headers={
            "Content-Type": f"multipart/mixed; boundary={boundary}",
            "Cache-Control": "public, max-age=31536000, immutable"})
        # The length is known: the peer can refuse a file over its limit before reading it.
        resp.content_length = len(head) + os.fstat(f.fileno()).st_size + len(tail)
        await resp.prepare(request)
        await resp.write(head)
        while chunk := f.read(CHUNK):
            await resp.write(chunk)
        await resp.write(tail)
    finally:
        f.close()
    await resp.write_eof()
    return resp


@federation_routes.get(FEDERATION_V1 + "/media/download/{mediaId}")
async def download(request: web.Request) -> web.StreamResponse:
    await federation_origin(request)
    hs = hs_of(request)
    row = await hs.media.get_media(hs.server_name, request.match_info["mediaId"],
                                   timeout_ms(request))
    assert row.sha256 is not None
    return await _multipart(request, row.sha256, row.content_type or "application/octet-stream",
                            row.upload_name)


@federation_routes.get(FEDERATION_V1 + "/media/thumbnail/{mediaId}")
async def thumbnail(request: web.Request) -> web.StreamResponse:
    await federation_origin(request)
    hs = hs_of(request)
    thumb = await hs.media.thumbnail(hs.server_name, request.match_info["mediaId"],
                                     *thumbnail_params(request), timeout_ms(request))
    return await _multipart(request, thumb.sha256, thumb.content_type, None)
