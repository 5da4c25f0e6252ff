"""Third-party networks (spec: client-server API "Third-party Networks").

Protocols are bridged by application services; none registers any yet, so every lookup is
empty rather than an error: Element asks for the protocol list at start-up.
"""

from __future__ import annotations

from aiohttp import web

from veche.errors import missing_param
from veche.http.base import CLIENT_V3, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/thirdparty/protocols")
async def protocols(request: web.Request) -> web.Response:
    await requester(request)
    return json_response({})


async def _reverse_lookup(request: web.Request, param: str) -> web.Response:
    await requester(request)
    if not request.query.get(param):
        raise missing_param(f"{param} is required")
    return json_response([])


@routes.get(CLIENT_V3 + "/thirdparty/location")
async def location_for_alias(request: web.Request) -> web.Response:
    return await _reverse_lookup(request, "alias")


@routes.get(CLIENT_V3 + "/thirdparty/user")
async def user_for_id(request: web.Request) -> web.Response:
    return await _reverse_lookup(request, "userid")
