"""The aiohttp application: routing, Matrix error bodies, CORS, compression, body size limits,
the Server header."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from veche.diskfull import disk_full_at
from veche.errors import MatrixError
from veche.http.base import Handler, json_response
from veche.http.compression import maybe_compress

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

SERVER = "Veche"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "Content-Disposition, Content-Length, Content-Range, Content-Type",
}


def _error(status: int, errcode: str, error: str, **extra: object) -> web.Response:
    # An empty errcode is a user-interactive auth challenge: flows and session only.
    body = {"errcode": errcode, "error": error, **extra} if errcode else dict(extra)
    resp = json_response(body, status=status)
    if status == 429 and "retry_after_ms" in extra:
        resp.headers["Retry-After"] = str(max(1, int(extra["retry_after_ms"]) // 1000))  # type: ignore[call-overload]
    return resp


def _refuse_nul_in_url(request: web.Request) -> None:
    """No identifier, type, key or transaction ID may hold U+0000 (see the spec's grammars),
    and no other path or query value needs one."""
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise MatrixError(400, "M_INVALID_PARAM", "NUL (U+0000) is not allowed in the URL")


@web.middleware
async def matrix_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS":
        resp: web.StreamResponse = web.Response(status=204)
    else:
        try:
            _refuse_nul_in_url(request)
            resp = await handler(request)
        except MatrixError as e:
            resp = _error(e.status, e.errcode, e.error, **e.extra)
        except web.HTTPRequestEntityTooLarge:
            resp = _error(413, "M_TOO_LARGE", "Request body too large")
        except web.HTTPMethodNotAllowed:
            resp = _error(405, "M_UNRECOGNIZED", "Method not allowed for this endpoint")
        except web.HTTPNotFound:
            resp = _error(404, "M_UNRECOGNIZED", "Unrecognized request")
        except web.HTTPException as e:
            resp = _error(e.status, "M_UNKNOWN", e.reason)
        except Exception as e:
            where = disk_full_at(e, request.app["hs"].config.database_url)
            if where is None:
                logger.exception("error handling %s %s", request.method, request.path)
                resp = _error(500, "M_UNKNOWN", "Internal server error")
            else:
                logger.error("disk full: %s (%s %s failed)", where, request.method, request.path)
                resp = _error(500, "M_UNKNOWN", "The server is out of disk space")
    if not resp.prepared:
        # Browsers send Origin on every cross-origin request; other clients need no CORS
        # headers, and on a slow link their ~250 bytes on every /sync answer add up.
        if "Origin" in request.headers:
            resp.headers.update(CORS_HEADERS)
        await maybe_compress(request, resp)
    return resp


def make_app(hs: HomeServer) -> web.Application:
    from veche.http import modules

    app = _application(hs)
    for routes in modules.all_routes():
        app.router.add_routes(routes)
    if hs.config.federation.enabled:
        for routes in modules.federation_routes():
            app.router.add_routes(routes)
    return app


def make_federation_app(hs: HomeServer) -> web.Application:
    """Only the federation and key APIs: what the TLS port ([federation] tls_port) serves."""
    from veche.http import modules

    app = _application(hs)
    for routes in modules.federation_routes():
        app.router.add_routes(routes)
    return app


def _application(hs: HomeServer) -> web.Application:
    middlewares = [matrix_middleware]
    if hs.metrics is not None:  # outside the Matrix one: it sees the status finally sent
        middlewares.insert(0, hs.metrics.metrics_middleware)
    app = web.Application(
        middlewares=middlewares,
        client_max_size=hs.config.limits.max_json_body_bytes,
        handler_args={"access_log": None},
    )
    app["hs"] = hs
    app.on_response_prepare.append(_server_header)
    return app


async def _server_header(request: web.Request, resp: web.StreamResponse) -> None:
    # aiohttp's default names Python's and its own versions: 36 bytes on every answer, a
    # few per cent of a live /sync answer on a slow link, and a hint for anyone probing.
    # Set, not defaulted: aiohttp 3.14 fills in its own before this hook runs.
    resp.headers["Server"] = SERVER
