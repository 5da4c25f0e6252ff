"""Account information (spec: client-server API "Current account information")."""

from __future__ import annotations

from aiohttp import web

from veche.http.base import CLIENT_V3, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/account/whoami")
async def whoami(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"user_id": req.user_id, "device_id": req.device_id, "is_guest": False})
