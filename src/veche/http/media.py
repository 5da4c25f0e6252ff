"""Content repository (spec: "Content repository"): upload, download, thumbnails, config,
URL previews; the authenticated /_matrix/client/v1/media routes and the deprecated
/_matrix/media/v3 ones (switched off by `media.enable_legacy_media = false`)."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from veche.errors import MatrixError, invalid_param, not_found
from veche.http.base import (
    CLIENT_V1,
    hs_of,
    json_response,
    query_bool,
    query_int,
    requester,
    require_not_suspended,
)
from veche.services.media import DEFAULT_WAIT_MS, MediaRow, MediaService, ThumbnailRow

routes = web.RouteTableDef()

MEDIA_V1 = CLIENT_V1 + "/media"
LEGACY = "/_matrix/media/v3"
UPLOAD_V1 = "/_matrix/media/v1"

# The spec's list of types safe to serve with `Content-Disposition: inline`.
INLINE_TYPES = {
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime", "audio/mp4", "audio/webm",
    "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav", "audio/x-wav",
    "audio/x-pn-wav", "audio/flac", "audio/x-flac",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; script-src 'none'; plugin-types "
    "application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    # Content never changes once uploaded (a media ID is never reused).
    "Cache-Control": "public, max-age=31536000, immutable",
}


def _media(request: web.Request) -> MediaService:
    return hs_of(request).media


def _legacy_allowed(request: web.Request) -> None:
    if not hs_of(request).config.media.enable_legacy_media:
        raise not_found("Unauthenticated media endpoints are disabled; use /_matrix/client/v1/media")


def _content_length(request: web.Request) -> int | None:
    # aiohttp has already rejected a malformed Content-Length header.
    return request.content_length


def _upload_params(request: web.Request) -> tuple[str | None, str | None]:
    content_type = request.headers.get("Content-Type")
    if content_type is not None and (len(content_type) > 255 or not content_type.isprintable()):
        raise invalid_param("Content-Type is not valid")
    filename = request.query.get("filename")
    if filename is not None and (len(filename) > 255 or not filename.isprintable()):
        raise invalid_param("filename is not valid")
    return content_type or None, filename or None


async def _upload(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    media = _media(request)
    media.check_upload_size(_content_length(request))
    content_type, filename = _upload_params(request)
    uri = await media.upload(req.user_id, request.content, _content_length(request), content_type,
                             filename)
    return json_response({"content_uri": uri})


@routes.post(LEGACY + "/upload")
async def upload(request: web.Request) -> web.Response:
    return await _upload(request)


@routes.post(UPLOAD_V1 + "/create")
async def create(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    uri, expires = await _media(request).create(req.user_id)
    return json_response({"content_uri": uri, "unused_expires_at": expires})


@routes.put(LEGACY + "/upload/{serverName}/{mediaId}")
async def upload_to(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    media = _media(request)
    media.check_upload_size(_content_length(request))
    content_type, filename = _upload_params(request)
    await media.upload_to(req.user_id, request.match_info["serverName"],
                          request.match_info["mediaId"], request.content, _content_length(request),
                          content_type, filename)
    return json_response({})


async def _config(request: web.Request) -> web.Response:
    return json_response({"m.upload.size": hs_of(request).config.media.max_upload_size})


@routes.get(MEDIA_V1 + "/config")
async def media_config(request: web.Request) -> web.Response:
    await requester(request)
    return await _config(request)


@routes.get(LEGACY + "/config")
async def legacy_config(request: web.Request) -> web.Response:
    _legacy_allowed(request)
    await requester(request)
    return await _config(request)


def timeout_ms(request: web.Request) -> int:
    return query_int(request, "timeout_ms", DEFAULT_WAIT_MS, maximum=60_000) or 0


def disposition(content_type: str, filename: str | None) -> str:
    kind = "inline" if content_type.split(";", 1)[0].strip().lower() in INLINE_TYPES else "attachment"
    if filename:
        # RFC 6266 / RFC 5987: the name percent-encoded as UTF-8, so no quoting tricks apply.
        return f"{kind}; filename*=utf-8''{quote(filename, safe='')}"
    return kind


async def _serve(request: web.Request, sha256: str, content_type: str,
                 filename: str | None) -> web.StreamResponse:
    media = _media(request)
    headers = {**SECURITY_HEADERS, "Content-Type": content_type,
               "Content-Disposition": disposition(content_type, filename)}
    path = media.store.local_path(sha256)
    if path is not None:
        if not path.exists():
            raise not_found("Media content is missing")
        # FileResponse streams from disk (sendfile) and answers Range / If-None-Match itself.
        resp = web.FileResponse(path, headers=headers)
        return resp
    # A store without local files: stream it (no Range support there).
    resp_stream = web.StreamResponse(headers=headers)
    f = await media.store.open(sha256)
    try:
        await resp_stream.prepare(request)
        while chunk := f.read(64 * 1024):
            await resp_stream.write(chunk)
    finally:
        f.close()
    await resp_stream.write_eof()
    return resp_stream


def _allow_remote(request: web.Request, legacy: bool) -> bool:
    # Only the legacy routes have the parameter (peers falling back to them send false).
    return not legacy or query_bool(request, "allow_remote", True)


async def _download(request: web.Request, legacy: bool = False) -> web.StreamResponse:
    row: MediaRow = await _media(request).get_media(
        request.match_info["serverName"], request.match_info["mediaId"], timeout_ms(request), legacy,
        _allow_remote(request, legacy))
    assert row.sha256 is not None
    filename = request.match_info.get("fileName") or row.upload_name
    return await _serve(request, row.sha256, row.content_type or "application/octet-stream", filename)


@routes.get(MEDIA_V1 + "/download/{serverName}/{mediaId}")
async def download(request: web.Request) -> web.StreamResponse:
    await requester(request)
    return await _download(request)


@routes.get(MEDIA_V1 + "/download/{serverName}/{mediaId}/{fileName}")
async def download_named(request: web.Request) -> web.StreamResponse:
    await requester(request)
    return await _download(request)


@routes.get(LEGACY + "/download/{serverName}/{mediaId}")
async def legacy_download(request: web.Request) -> web.StreamResponse:
    _legacy_allowed(request)
    return await _download(request, legacy=True)


@routes.get(LEGACY + "/download/{serverName}/{mediaId}/{fileName}")
async def legacy_download_named(request: web.Request) -> web.StreamResponse:
    _legacy_allowed(request)
    return await _download(request, legacy=True)


def thumbnail_params(request: web.Request) -> tuple[int, int, str, bool]:
    """(width, height, method, animated) asked for."""
    width = query_int(request, "width", minimum=1)
    height = query_int(request, "height", minimum=1)
    if width is None or height is None:
        raise MatrixError(400, "M_MISSING_PARAM", "width and height are required")
    method = request.query.get("method", "scale")
    if method not in ("scale", "crop"):
        raise invalid_param("method must be scale or crop")
    return min(width, 10_000), min(height, 10_000), method, query_bool(request, "animated")


async def _thumbnail(request: web.Request, legacy: bool = False) -> web.StreamResponse:
    thumb: ThumbnailRow = await _media(request).thumbnail(
        request.match_info["serverName"], request.match_info["mediaId"], *thumbnail_params(request),
        timeout_ms(request), legacy, _allow_remote(request, legacy))
    return await _serve(request, thumb.sha256, thumb.content_type, None)


@routes.get(MEDIA_V1 + "/thumbnail/{serverName}/{mediaId}")
async def thumbnail(request: web.Request) -> web.StreamResponse:
    await requester(request)
    return await _thumbnail(request)


@routes.get(LEGACY + "/thumbnail/{serverName}/{mediaId}")
async def legacy_thumbnail(request: web.Request) -> web.StreamResponse:
    _legacy_allowed(request)
    return await _thumbnail(request, legacy=True)


async def _preview(request: web.Request) -> web.Response:
    req = await requester(request)
    url = request.query.get("url")
    if not url:
        raise MatrixError(400, "M_MISSING_PARAM", "url is required")
    query_int(request, "ts")
    return json_response(await _media(request).previews.preview(req.user_id, url))


@routes.get(MEDIA_V1 + "/preview_url")
async def preview_url(request: web.Request) -> web.Response:
    return await _preview(request)


@routes.get(LEGACY + "/preview_url")
async def legacy_preview_url(request: web.Request) -> web.Response:
    _legacy_allowed(request)
    return await _preview(request)

