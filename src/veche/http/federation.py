"""Server-server API basics: /version, /query/profile, and who signed a request.

Routes in `federation_routes` are served only with [federation] enabled: on [listen], and on
the TLS port when [tls] is set. Unknown /_matrix/federation routes answer 404 M_UNRECOGNIZED
like every unknown route.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche import __version__
from veche.errors import missing_param
from veche.http.base import hs_of, json_body, json_response

federation_routes = web.RouteTableDef()
FEDERATION_V1 = "/_matrix/federation/v1"


async def federation_origin(request: web.Request) -> str:
    """The server that signed this request (401/403 otherwise); the body, if any, must be
    JSON since it is part of what was signed."""
    cached = request.get("origin")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    content = None
    if request.method in ("PUT", "POST") or request.body_exists:
        content = await json_body(request)
        request["json_body"] = content  # for the handler (`federation_body`)
    origin = await hs_of(request).federation.authenticate(
        request.method, request.raw_path, request.headers.get("Authorization"), content)
    request["origin"] = origin
    return origin


async def federation_body(request: web.Request) -> dict[str, Any]:
    """The JSON body of a request `federation_origin` authenticated, parsed once."""
    body = request.get("json_body")
    return body if body is not None else await json_body(request)


@federation_routes.get(FEDERATION_V1 + "/version")
async def version(request: web.Request) -> web.Response:
    return json_response({"server": {"name": "Veche", "version": __version__}})


@federation_routes.get(FEDERATION_V1 + "/query/profile")
async def query_profile(request: web.Request) -> web.Response:
    await federation_origin(request)
    user_id = request.query.get("user_id")
    if not user_id:
        raise missing_param("Missing user_id")
    hs = hs_of(request)
    return json_response(await hs.federation.query_profile(user_id, request.query.get("field")))
